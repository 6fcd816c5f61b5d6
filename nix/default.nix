# kmodidx for Nix: the package, and the functions that replace nixpkgs'
# aggregateModules (mkModulesIndex) and makeModulesClosure (mkModulesClosure).
# See the README's "Nix" section.
{
  pkgs ? import <nixpkgs> { },
  # Any derivation or path with bin/kmodidx. By default, built from this
  # source for the build platform, since the functions below run it at build
  # time (as aggregateModules runs buildPackages' kmod).
  kmodidx ? pkgs.buildPackages.callPackage ./package.nix { },
}:

let
  inherit (pkgs) lib;
  step = import ./step.nix { inherit pkgs kmodidx; };
in
{
  inherit kmodidx;
  mkModulesIndex = import ./modules-index.nix { inherit lib step; };
  mkModulesClosure = import ./modules-closure.nix { inherit lib step; };
}
