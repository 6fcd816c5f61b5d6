# kmodidx built from this source tree with the committed Cargo.lock.
{ lib, rustPlatform }:

let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);

  # What cargo needs to build the workspace: the manifests, the lock file,
  # the sources of every member and the files of declared targets (fixtures,
  # tests, nix/ and contrib/ are left out, so that editing them does not
  # rebuild the package).
  # Targets the manifest declares outside src/ ([[bench]], [[test]],
  # [[example]]) must exist for cargo to read the manifest at all.
  members = builtins.filter (m: m != ".") (cargoToml.workspace.members or [ ]);
  declared =
    kind: dir: map (t: t.path or "${dir}/${t.name}.rs") (cargoToml.${kind} or [ ]);
  wanted = [
    "Cargo.toml"
    "Cargo.lock"
    "src"
  ]
  ++ declared "bench" "benches"
  ++ declared "test" "tests"
  ++ declared "example" "examples"
  ++ builtins.concatMap (m: [ "${m}/Cargo.toml" "${m}/src" ]) members;
  root = toString ../.;
  relative = path: lib.removePrefix (root + "/") (toString path);
  keep =
    path: type:
    let
      rel = relative path;
    in
    builtins.any (
      w: rel == w || lib.hasPrefix (w + "/") rel || (type == "directory" && lib.hasPrefix (rel + "/") w)
    ) wanted;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  src = lib.cleanSourceWith {
    name = "kmodidx-source";
    src = ../.;
    filter = keep;
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The test suite needs the kernel corpus and Debian's depmod as an oracle;
  # the project's CI (.ci/run) runs it.
  doCheck = false;

  meta = {
    description = cargoToml.package.description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    platforms = lib.platforms.unix;
    mainProgram = "kmodidx";
  };
}
