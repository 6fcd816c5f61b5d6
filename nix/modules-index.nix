# mkModulesIndex: the kernel module directory of `modules`, indexed by kmodidx.
# A drop-in for nixpkgs' aggregateModules output; see the README's "Nix" section.
{ lib, step }:

let
  mkModulesIndex =
    {
      # A tree with lib/modules/<version>/ (a derivation or path), a store path
      # that is a symlink forest of such trees (buildEnv, symlinkJoin,
      # aggregateModules), or a tar or cpio archive of one (plain, gzip, xz, zstd).
      modules,
      # Needed only when the input holds several kernels.
      kernelVersion ? null,
      # The kernel's System.map or Module.symvers: check every module's symbols.
      systemMap ? null,
      symvers ? null,
      # Fail the build on an unknown symbol, a CRC mismatch or an unreadable module.
      strict ? false,
      name ? "kernel-modules",
      # "kmod34" (default), "kmod33" or "kmod30": whose output format to match.
      compat ? null,
      # depmod.d directories or files from outside the input.
      config ? [ ],
      # More `kmodidx build` arguments.
      extraArgs ? [ ],
      # Anything else becomes an attribute of the derivation.
      ...
    }@args:

    let
      opt = flag: value: lib.optionals (value != null) [ flag "${value}" ];
      buildArgs =
        opt "--kernel-version" kernelVersion
        ++ opt "--system-map" systemMap
        ++ opt "--symvers" symvers
        ++ opt "--compat" compat
        ++ lib.optionals strict [ "--strict" ]
        ++ builtins.concatMap (c: [ "--config" "${c}" ]) config
        ++ extraArgs;
    in
    step {
      fn = mkModulesIndex;
      inherit args name modules;
      arrays = { inherit buildArgs; };
      script = ./modules-index.sh;
    };
in
mkModulesIndex
