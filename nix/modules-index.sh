# mkModulesIndex's build step (sourced by runCommand). Set by the caller:
#   kmodidx    the kmodidx binary
#   modules    the input: a directory (tree or symlink forest) or an archive
#   storeDir   the Nix store, under which absolute links in the input resolve
#   buildArgs  more `kmodidx build` arguments (an array)
set -euo pipefail
shopt -s nullglob dotglob

if [ ! -d "$modules" ]; then
    # An archive: unpack the module directory, modules.order and modules.builtin*
    # beside the index, as real files.
    mkdir -p "$out"
    "$kmodidx" build --from "$modules" --out "$out" --staged "${buildArgs[@]}"
    exit 0
fi

# A tree or a symlink forest. As aggregateModules does, $out mirrors the input
# with symlinks, except along the path to the module directory, whose
# directories are real so that the fresh index can sit beside the links to the
# modules. Like aggregateModules, only the input's etc/depmod.d applies.
if [ ! -d "$modules/lib/modules" ] && [ ! -d "$modules/usr/lib/modules" ]; then
    echo "No modules found in $modules."
    ln -s "$modules" "$out"
    exit 0
fi
configArgs=(--no-input-config)
if [ -d "$modules/etc/depmod.d" ]; then
    configArgs+=(--config "$modules/etc/depmod.d")
fi
index=$TMPDIR/kmodidx-index
"$kmodidx" build --from "$modules" --follow-links-under "$storeDir" \
    --out "$index" --manifest "$TMPDIR/kmodidx.manifest.json" \
    "${configArgs[@]}" "${buildArgs[@]}"

dep=("$index"/lib/modules/*/modules.dep "$index"/usr/lib/modules/*/modules.dep)
if [ "${#dep[@]}" -ne 1 ]; then
    echo "mkModulesIndex: expected one module directory in kmodidx's output, found ${#dep[@]}" >&2
    exit 1
fi
versionDir=${dep[0]%/modules.dep}
versionDir=${versionDir#"$index"/}

# makeReal DIR: turn $out/DIR (a link made one level up, or nothing) into a
# real directory holding a link to every entry of $modules/DIR.
makeReal() {
    local dir=$1 entry name
    rm -f "$out${dir:+/$dir}"
    mkdir -p "$out${dir:+/$dir}"
    for entry in "$modules${dir:+/$dir}"/*; do
        name=${entry##*/}
        case "$dir/$name" in
        # The input's own index is replaced (aggregateModules removes every
        # modules.* but modules.order and modules.builtin* before depmod).
        /kmodidx.manifest.json) continue ;;
        "$versionDir"/modules.order | "$versionDir"/modules.builtin | "$versionDir"/modules.builtin.modinfo) ;;
        "$versionDir"/modules.*) continue ;;
        esac
        ln -s "$entry" "$out${dir:+/$dir}/$name"
    done
}
makeReal ""
path=
IFS=/ read -ra parts <<<"$versionDir"
for part in "${parts[@]}"; do
    path=${path:+$path/}$part
    makeReal "$path"
done
cp "$index/$versionDir"/modules.* "$out/$versionDir/"
cp "$TMPDIR/kmodidx.manifest.json" "$out/"
