#!/usr/bin/env bash
# Builds the seed corpus of every target into OUT (default /tmp/kmodidx-seeds)
# from the fixtures and the shared kernels (../shared/corpus, or
# $KMODIDX_CORPUS as for the tests).
# Needs dpkg-deb, tar, cpio, gzip, xz, zstd, /sbin/modinfo, python3.
#   fuzz/seeds.sh [OUT]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
corpus=${KMODIDX_CORPUS:-$repo/../shared/corpus}
S=${1:-/tmp/kmodidx-seeds}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
rm -rf "$S"; mkdir -p "$S"/{module,tar,cpio,config,kernel_symbols,module_files,manifest,index_bin}

dpkg-deb -x "$corpus"/debian/linux-image-6.1.0-*.deb "$work/k1"
dpkg-deb -x "$corpus"/debian/linux-image-6.12.*.deb "$work/k2"
K1=$(echo "$work"/k1/lib/modules/*); K2=$(echo "$work"/k2/lib/modules/*)

# module: every fixture module, a sample of small real ones (plain and xz),
# and a few recompressed with gzip and zstd.
i=0; while read -r f; do cp "$f" "$S/module/fx$i-$(basename "$f")"; i=$((i+1)); done \
    < <(find "$repo/fixtures" -name '*.ko*' | sort)
# (awk rather than head keeps reading: no SIGPIPE under pipefail)
find "$K1/kernel" -name '*.ko' -size -24k | sort | awk 'NR%6==0 && ++n<=40' |
    while read -r f; do cp "$f" "$S/module/k1-$(basename "$f")"; done
find "$K2/kernel" -name '*.ko.xz' -size -10k | sort | awk 'NR%8==0 && ++n<=25' |
    while read -r f; do cp "$f" "$S/module/k2-$(basename "$f")"; done
k1=("$S"/module/k1-*)
for f in "${k1[@]:0:6}"; do gzip -9 -c "$f" > "$f.gz"; zstd -q -19 -c "$f" > "$f.zst"; done

# tar and cpio: small trees (links, hard links, long names, sparse files,
# depmod.d, a Module.symvers) in every format, each behind the mode byte of
# harness::wrap_archive (0 raw, 1 gzip, 2 xz, 3 zstd), and compressed raw.
V=6.1.0-fixture; B=$repo/fixtures/trees/basic/lib/modules/$V; W=$work/mini
mkdir -p "$W/t1/lib/modules/$V/kernel/drivers" "$W/t1/etc/depmod.d"
cp "$B"/modules.order "$B"/modules.builtin "$B"/modules.builtin.modinfo "$W/t1/lib/modules/$V/"
cp "$B"/kernel/lib/core_base.ko "$B"/kernel/lib/core_util.ko "$W/t1/lib/modules/$V/kernel/drivers/"
xz -c "$B"/kernel/drivers/net/top_net.ko > "$W/t1/lib/modules/$V/kernel/drivers/top_net.ko.xz"
ln -s drivers "$W/t1/lib/modules/$V/kernel/alias"
ln -s ../../../../etc "$W/t1/lib/modules/$V/kernel/up"
ln -s /nowhere "$W/t1/lib/modules/$V/abs"
printf 'search updates built-in\n' > "$W/t1/etc/depmod.d/a.conf"
head -5 "$repo/fixtures/trees/symvers/Module.symvers" > "$W/t1/Module.symvers"
mkdir -p "$W/t2/lib/modules/1/kernel"; cp "$B"/kernel/drivers/char/nomajor.ko "$W/t2/lib/modules/1/kernel/"
echo kernel/nomajor.ko > "$W/t2/lib/modules/1/modules.order"
ln "$W/t2/lib/modules/1/kernel/nomajor.ko" "$W/t2/lib/modules/1/kernel/hard.ko"
D=$W/t3/lib/modules/2/$(printf 'd%.0s' {1..120})/$(printf 'e%.0s' {1..60}); mkdir -p "$D"
cp "$B"/kernel/lib/core_base.ko "$D/m.ko"; truncate -s 20000 "$W/t3/sparse.ko"
cd "$W"
for t in t1 t2; do
    for fmt in ustar gnu pax; do tar --format=$fmt -cf $t-$fmt.tar -C $t .; done
    (cd $t && find . | sort | cpio -o -H newc --quiet > ../$t-newc.cpio
     find . | sort | cpio -o -H crc --quiet > ../$t-crc.cpio)
done
tar --format=gnu -cf t3-gnu.tar -C t3 .; tar --format=pax -cf t3-pax.tar -C t3 .
tar --format=gnu -S -cf t3-sparse.tar -C t3 sparse.ko; tar --format=pax -S -cf t3-psparse.tar -C t3 sparse.ko
(cd t3 && find . | sort | cpio -o -H newc --quiet > ../t3-newc.cpio)
cat t2-newc.cpio > mc.cpio; gzip -c t1-newc.cpio >> mc.cpio   # early-microcode layout
for f in *.tar *.cpio; do
    case $f in *.tar) dest=$S/tar ;; *) dest=$S/cpio ;; esac
    for m in 0 1 2 3; do (printf "\\x0$m"; cat "$f") > "$dest/$m-$f"; done
    (printf '\x00'; gzip -c "$f") > "$dest/0-$f.gz"
    (printf '\x00'; xz -c "$f") > "$dest/0-$f.xz"
    (printf '\x00'; zstd -q -c "$f") > "$dest/0-$f.zst"
done

# depmod.d
cd "$S/config"
printf 'search updates extra built-in\n' > s1.conf
printf '# comment\nsearch updates \\\n  external built-in\nexternal 6.1.* /opt/vendor\nexternal * /srv/extra\n' > s2.conf
printf 'override snd-foo 6.1.0-fuzz updates\noverride dup_mod * extra\noverride x ^6\\.[0-9]+.*$ sub\n' > s3.conf
printf 'exclude build source\nexclude .git\ninclude /etc/foo\nmake_map_files yes\nbogus line here\n\n\t \n' > s4.conf
printf 'search\noverride a\nexternal b\nsearch a\\\\b c\\\nd\x00hidden\nexclude\t\ttab\n' > s5.conf
printf 'override m (6|7).[ab]+{2,3} updates\nexternal [ /x\nexternal (?i)6\\.1 /y\n' > s6.conf

# Module.symvers and System.map
cd "$S/kernel_symbols"
head -c 6000 "$corpus"/6.1.0-*/Module.symvers > k1.symvers
tail -c 4000 "$corpus"/6.12.*/Module.symvers > k2.symvers
for f in "$repo"/fixtures/trees/*/Module.symvers; do cp "$f" "fx-$(basename "$(dirname "$f")").symvers"; done
head -60 "$corpus"/6.1.0-*/Module.symvers |
    awk '{printf "ffffffff8%07x R __ksymtab_%s\nffffffff8%07x T %s\n", NR*16, $2, NR*16+8, $2}' > s.map
head -30 "$corpus"/6.1.0-*/Module.symvers | awk '{printf "ffffffff8%07x r ___ksymtab_%s\n", NR*16, $2}' > s-prefixed.map
printf '0x12345678\tfoo\tvmlinux\tEXPORT_SYMBOL\n0xzz\tbar\tvmlinux\tEXPORT_SYMBOL_GPL\tNS\n-0x1\tneg\tvmlinux\n0xffffffffffffffffff\tbig\tvmlinux\n0x1 short\n0x2\tm\tdrivers/x\n' > edge.symvers
cat "$work"/k1/boot/System.map-* > placeholder.map

# modules.order, modules.builtin, modules.builtin.modinfo, aliases
cd "$S/module_files"; SEP=$'\n%%%%\n'
mk() { { cat "$1"; printf '%s' "$SEP"; cat "$2"; printf '%s' "$SEP"; cat "$3"; printf '%s' "$SEP"; cat "$4"; } > "$5"; }
head -40 "$K1/modules.order" > "$work/o"; head -40 "$K1/modules.builtin" > "$work/b"
head -c 3000 "$K1/modules.builtin.modinfo" > "$work/m"
/sbin/modinfo -F alias "$(find "$K1/kernel" \( -name virtio_net.ko -o -name e1000.ko \) -print -quit)" | awk 'NR<=40' > "$work/a"
mk "$work/o" "$work/b" "$work/m" "$work/a" k1
tail -40 "$K2/modules.order" > "$work/o"; tail -40 "$K2/modules.builtin" > "$work/b"
tail -c 3000 "$K2/modules.builtin.modinfo" > "$work/m"
/sbin/modinfo -F alias "$(find "$K2/kernel" -name virtio_net.ko.xz -print -quit)" | awk 'NR<=40' > "$work/a"
mk "$work/o" "$work/b" "$work/m" "$work/a" k2
printf 'pci:v00008086d*sv*sd*bc*sc*i*\nusb:v1234p[0-9]*d*\nacpi*:PNP0C0[-A]:*\nfs-ext4\n[unmatched\n' > "$work/a"
for d in "$repo"/fixtures/trees/*/lib/modules/*/; do
    n=$(basename "$(dirname "$(dirname "$(dirname "$d")")")")
    for f in order builtin builtin.modinfo; do cat "$d/modules.$f" 2>/dev/null > "$work/$f" || : > "$work/$f"; done
    mk "$work/order" "$work/builtin" "$work/builtin.modinfo" "$work/a" "fx-$n"
done
printf 'kernel/a.ko\nkernel/a.ko\nkernel/drivers/net/dummy.ko\nkernel/fs/ext4/ext4.ko\nupdates/snd-hda.ko\nno-newline.ko' > "$work/o"
printf 'kernel/x.ko\n\x00kernel/y.ko\n' > "$work/b"
printf 'ext4.alias=fs-ext4\0ext4.softdep=pre: crc32c\0bad\0.x=\0y.=z\0\xff.alias=\xfe\0' > "$work/m"
printf '\xff\xfe\nsnd-[a-b]-x\n\n' > "$work/a"; mk "$work/o" "$work/b" "$work/m" "$work/a" edge

# manifests: real ones from the fixtures, and edited ones
cd "$repo"; kmodidx=${KMODIDX:-$repo/target/release/kmodidx}
"$kmodidx" build --from fixtures/trees/basic --out "$work/o1" >/dev/null 2>&1
"$kmodidx" build --from fixtures/trees/symvers --out "$work/o2" --staged --compat kmod30 --mtime 12345 >/dev/null 2>&1
"$kmodidx" build --from fixtures/trees/compressed --out "$work/o3" --compat kmod33 >/dev/null 2>&1
cp "$work/o1/kmodidx.manifest.json" "$S/manifest/basic.json"
cp "$work/o2/kmodidx.manifest.json" "$S/manifest/staged.json"
cp "$work/o3/kmodidx.manifest.json" "$S/manifest/compressed.json"
python3 - "$S/manifest" <<'PY'
import json, sys
S = sys.argv[1]
m = json.load(open(S + '/basic.json'))
m['files'] = m['files'][:2]; m['options']['symbol_prefix'] = '_'; m['options']['config_dirs'] = ['/etc/x']
open(S + '/small.json', 'w').write(json.dumps(m))
m2 = dict(m); m2['schema'] = 2; open(S + '/schema2.json', 'w').write(json.dumps(m2))
m3 = json.loads(json.dumps(m)); m3['files'].append(dict(m3['files'][0], size=7))
open(S + '/dup.json', 'w').write(json.dumps(m3, indent=1))
open(S + '/unicode.json', 'w').write(json.dumps(m).replace('"modules.dep"', '"mod\\u00e9\\ud83d\\ude00/\\u0000x"'))
PY
# .bin indexes: every distinct one of the golden fixtures (both layouts) and
# the corpus kernels' small ones, each behind a key for the searches (the
# first byte is its length, see harness::index_bin).
cd "$S/index_bin"; i=0
while read -r f; do
    for key in "" "core_base" "pci:v00008086d00001234sv00000000sd00000000bc02sc00i00" "symbol:crc32c"; do
        { printf "\\$(printf '%03o' "${#key}")%s" "$key"; cat "$f"; } > "bin$i"; i=$((i + 1))
    done
done < <({ find "$repo/fixtures" -name '*.bin'; find "$corpus" -name '*.bin' -size -16k; } |
    xargs sha256sum | sort -u -k1,1 | awk '{print $2}' | sort)

echo "seeds in $S"
