# A stand-in for the few parts of nixpkgs that kmodidx's nix/ files use
# (callPackage, buildPackages, runCommand, rustPlatform.buildRustPackage and
# some of lib), made of raw derivations that run the host's own tools. It lets
# the tests run nix-build offline on a machine without nixpkgs; it is not a
# general nixpkgs, and the real nix/ files use nothing that only exists here.
#
# Host tools come from /usr/bin and /bin. buildRustPackage also needs the Rust
# toolchain and crate cache the tests use, named by environment variables at
# evaluation time (the stub only, and only for that function):
#   KMODIDX_STUB_RUST_SYSROOT  `rustc --print sysroot` (bin/cargo, bin/rustc)
#   KMODIDX_STUB_CARGO_HOME    a CARGO_HOME whose registry holds Cargo.lock's crates
{ ... }:

let
  system = builtins.currentSystem;
  hostPath = "/usr/bin:/bin";
  lib = import ./lib.nix;

  # Attributes that describe a package but are not derivation inputs.
  notInputs = [
    "meta"
    "passthru"
  ];

  runCommand =
    name: env: buildCommand:
    derivation (
      builtins.removeAttrs env notInputs
      // {
        inherit name system buildCommand;
        builder = "/bin/bash";
        args = [ ./run-command.sh ];
        PATH = hostPath;
      }
    );

  requireEnv =
    var:
    let
      value = builtins.getEnv var;
    in
    if value == "" then
      throw "stub-nixpkgs: set ${var} to build Rust packages (see nix/tests/stub-nixpkgs/default.nix)"
    else
      value;

  buildRustPackage =
    {
      pname,
      version,
      src,
      cargoLock,
      doCheck ? true,
      ...
    }:
    let
      sysroot = requireEnv "KMODIDX_STUB_RUST_SYSROOT";
    in
    derivation {
      name = "${pname}-${version}";
      inherit system src doCheck;
      inherit (cargoLock) lockFile;
      builder = "/bin/bash";
      args = [ ./build-rust-package.sh ];
      PATH = "${sysroot}/bin:${hostPath}";
      hostCargoHome = requireEnv "KMODIDX_STUB_CARGO_HOME";
    };

  pkgs = {
    inherit lib runCommand;
    rustPlatform = {
      inherit buildRustPackage;
    };
    buildPackages = pkgs;
    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // args);
  };
in
pkgs
