# A symlink forest over a kernel tree in the store, shaped as buildEnv and
# aggregateModules make them: real directories where the forest adds
# something, links to the tree's directories and files elsewhere, every link
# an absolute path into the store. It also carries a stale modules.dep, which
# mkModulesIndex must replace. Used by tests/it/nix.rs.
{ pkgs, tree }:

pkgs.runCommand "kernel-modules-forest" { } ''
  set -eu
  for v in ${tree}/lib/modules/*; do
    version=''${v##*/}
    dir=$out/lib/modules/$version
    mkdir -p "$dir/kernel"
    # Whole directories as single links...
    for entry in "$v"/kernel/*; do
      [ "''${entry##*/}" = drivers ] || ln -s "$entry" "$dir/kernel/"
    done
    # ...and one subtree linked file by file.
    cp -rs "$v/kernel/drivers" "$dir/kernel/drivers"
    for f in "$v"/modules.*; do
      ln -s "$f" "$dir/"
    done
    echo "kernel/stale.ko:" >"$dir/modules.dep"
  done
''
