# mkModulesClosure: the modules `rootModules` need, with their dependencies,
# firmware and index, from `modules`. A drop-in for nixpkgs'
# makeModulesClosure; see the README's "Nix" section.
{ lib, step }:

let
  mkModulesClosure =
    {
      # As mkModulesIndex's `modules` (makeModulesClosure calls it `kernel`).
      modules,
      # Module names or aliases (`fs-vfat`, `crypto-crc32c`), resolved as modprobe does.
      rootModules,
      # A path or derivation with lib/firmware/ (as hardware.firmware), copied
      # from for the closure's firmware; by default the firmware inside `modules`.
      firmware ? null,
      # Root modules that may be missing (a warning, not an error); `true` allows
      # every root module to be missing, as makeModulesClosure's allowMissing.
      allowMissing ? [ ],
      # Firmware files (paths under lib/firmware) to include whichever modules
      # need them, as makeModulesClosure's extraFirmwarePaths.
      extraFirmwarePaths ? [ ],
      kernelVersion ? null,
      name ? "kernel-modules-closure",
      # More `kmodidx build` arguments.
      extraArgs ? [ ],
      # Anything else becomes an attribute of the derivation.
      ...
    }@args:

    let
      missing = if allowMissing == true then rootModules else if allowMissing == false then [ ] else allowMissing;
      buildArgs =
        builtins.concatMap (m: [ "--modules" m ]) rootModules
        ++ builtins.concatMap (m: [ "--allow-missing" m ]) missing
        ++ lib.optionals (kernelVersion != null) [ "--kernel-version" kernelVersion ]
        ++ extraArgs;
    in
    step {
      fn = mkModulesClosure;
      inherit args name modules;
      arrays = {
        inherit buildArgs;
        extraFirmware = extraFirmwarePaths;
        firmware = lib.optionals (firmware != null) [ "${firmware}" ];
      };
      script = ./modules-closure.sh;
    };
in
mkModulesClosure
