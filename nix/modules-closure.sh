# mkModulesClosure's build step (sourced by runCommand). Set by the caller:
#   kmodidx    the kmodidx binary
#   modules    the input: a directory (tree or symlink forest) or an archive
#   firmware   nothing, or a directory with lib/firmware/ (an array)
#   storeDir   the Nix store, under which absolute links in the input resolve
#   buildArgs  the closure's `kmodidx build` arguments (an array)
#   extraFirmware  firmware files to add whatever the modules need (an array)
set -euo pipefail

mkdir -p "$out"
if [ ! -d "$modules" ]; then
    if [ "${#firmware[@]}" -gt 0 ] || [ "${#extraFirmware[@]}" -gt 0 ]; then
        echo "mkModulesClosure: firmware needs a directory as modules, not the archive $modules" >&2
        exit 1
    fi
    "$kmodidx" build --from "$modules" --out "$out" --staged "${buildArgs[@]}"
    exit 0
fi

# kmodidx copies the closure's firmware from the input's lib/firmware: give it
# an input root whose module directories are the modules' and whose
# lib/firmware is `firmware`'s. As in mkModulesIndex, only the input's
# etc/depmod.d applies.
input=$TMPDIR/kmodidx-input
mkdir -p "$input/lib"
for dir in lib/modules usr/lib/modules; do
    if [ -d "$modules/$dir" ]; then
        mkdir -p "$input/${dir%/modules}"
        ln -s "$modules/$dir" "$input/$dir"
    fi
done
if [ "${#firmware[@]}" -gt 0 ]; then
    firmwareDir=${firmware[0]}/lib/firmware
else
    firmwareDir=$modules/lib/firmware
fi
if [ -d "$firmwareDir" ]; then
    ln -s "$firmwareDir" "$input/lib/firmware"
fi
configArgs=(--no-input-config)
if [ -d "$modules/etc/depmod.d" ]; then
    configArgs+=(--config "$modules/etc/depmod.d")
fi
"$kmodidx" build --from "$input" --follow-links-under "$storeDir" \
    --out "$out" --staged "${configArgs[@]}" "${buildArgs[@]}"

# As makeModulesClosure: each extra firmware file, or its compressed forms.
for name in "${extraFirmware[@]}"; do
    found=
    for file in "$name" "$name.xz" "$name.zst"; do
        if [ -e "$firmwareDir/$file" ]; then
            mkdir -p "$(dirname "$out/lib/firmware/$file")"
            cp -L "$firmwareDir/$file" "$out/lib/firmware/$file"
            found=1
            [ "$file" = "$name" ] && break
        fi
    done
    [ -n "$found" ] || echo "mkModulesClosure: WARNING: missing firmware $name" >&2
done
