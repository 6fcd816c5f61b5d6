# The derivation mkModulesIndex and mkModulesClosure make: runCommand sourcing
# a build-step script, with `kmodidx` (the binary), `modules` (the input),
# `storeDir` and the given bash arrays set for it. The function's own
# arguments are removed from `args`; the rest become attributes of the
# derivation.
{ pkgs, kmodidx }:

{
  fn,
  args,
  name,
  modules,
  arrays,
  script,
}:

let
  inherit (pkgs) lib;
  own = builtins.attrNames (builtins.functionArgs fn);
  assign = var: "${var}=(${lib.escapeShellArgs arrays.${var}})";
in
pkgs.runCommand name (builtins.removeAttrs args own) ''
  kmodidx=${kmodidx}/bin/kmodidx
  modules=${modules}
  storeDir=${builtins.storeDir}
  ${builtins.concatStringsSep "\n" (map assign (builtins.attrNames arrays))}
  source ${script}
''
