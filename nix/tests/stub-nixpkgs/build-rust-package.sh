# buildRustPackage's builder: build the workspace's default members with the
# locked versions, offline, from the crates in the host's cargo registry cache
# (nixpkgs' importCargoLock fetches and vendors them by hash instead), and
# install their binaries into $out/bin.
set -eu -o pipefail
cp -r "$src" source
chmod -R u+w source
cd source
if ! cmp -s "$lockFile" Cargo.lock; then
    echo "stub buildRustPackage: cargoLock.lockFile differs from the source's Cargo.lock" >&2
    exit 1
fi
export CARGO_HOME=$PWD/.cargo-home
# The registry's index and downloaded crates are read from the host; crates
# are unpacked into this build's own CARGO_HOME.
mkdir -p "$CARGO_HOME/registry"
ln -s "$hostCargoHome/registry/index" "$hostCargoHome/registry/cache" "$CARGO_HOME/registry/"
cargo build --release --offline --frozen
if [ -n "$doCheck" ]; then
    cargo test --release --offline --frozen
fi
mkdir -p "$out/bin"
find target/release -maxdepth 1 -type f -perm -u+x -exec cp {} "$out/bin/" \;
