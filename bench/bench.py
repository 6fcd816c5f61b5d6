#!/usr/bin/env python3
"""Side-by-side benchmark of `kmodidx build` and depmod (by default Debian's, kmod 30).

Run it through bench/run.sh; bench/README.md documents the workloads, the
options and how the numbers are taken. Python 3 standard library only.

Every measured run of either tool is checked: every index file the baseline
depmod writes (10 for kmod 30-32, 11 with modules.weakdep from kmod 33 on)
must be byte-identical between the two tools (kmodidx runs with the
`--compat` that matches the baseline's version, `depmod --version`),
otherwise the workload is reported as a mismatch and no timing is given
for it.
"""

import argparse
import datetime
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What Debian's depmod 30 writes (no modules.weakdep, which kmod 33 added).
KMOD30_FILES = [
    "modules.alias",
    "modules.alias.bin",
    "modules.builtin.alias.bin",
    "modules.builtin.bin",
    "modules.dep",
    "modules.dep.bin",
    "modules.devname",
    "modules.softdep",
    "modules.symbols",
    "modules.symbols.bin",
]

SCALE_KVER = "6.1.0-scale"
SCALE_SIZES = [1000, 10000, 60000]
GIB = 1 << 30

# Targets (ratios are depmod time / kmodidx time, wall clock): issue #5 for
# the corpus's cloud kernels and the archive rows, issue #10 for the big
# amd64 kernels of --debs (kmodidx with its default manifest).
TARGET_RATIO = {"kernel-6.1": 3.0, "kernel-6.12": 1.9, "archive": 3.0,
                "kernel-6.1-amd64": 2.8, "kernel-6.12-amd64": 1.9}
TARGET_ISSUE = {"kernel-6.1": 5, "kernel-6.12": 5, "kernel-6.1-amd64": 10,
                "kernel-6.12-amd64": 10}
LINEARITY_TOLERANCE = 0.30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench: error: {msg}")
    sys.exit(2)


# ---------------------------------------------------------------- running


class Sample:
    """Wall, CPU (user+sys) seconds and peak RSS (KiB) of one run."""

    def __init__(self, wall=0.0, cpu=0.0, rss_kib=0):
        self.wall = wall
        self.cpu = cpu
        self.rss_kib = rss_kib

    def add(self, other):
        # Steps of a pipeline run one after another: times add up, the
        # peak is the largest peak of any step.
        return Sample(
            self.wall + other.wall,
            self.cpu + other.cpu,
            max(self.rss_kib, other.rss_kib),
        )


class StepFailed(Exception):
    pass


GNU_TIME = "/usr/bin/time"


def run_step(argv, log_path):
    """Runs argv with stdout+stderr appended to log_path; returns a Sample.

    The command runs under GNU time, started with posix_spawn and reaped
    with wait4. Wall time is taken around that; CPU time is ru_utime +
    ru_stime from wait4, which covers every descendant that was waited for
    (the command, and e.g. tar's zstd). Peak RSS comes from GNU time's %M
    instead: a process exec'd straight from this Python process would
    inherit Python's own RSS high-water mark in its ru_maxrss (the kernel
    carries it over from the pre-exec memory map), while GNU time forks the
    command from its own tiny address space.
    """
    rss_path = f"{log_path}.rss"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        env = dict(os.environ, LC_ALL="C")
        full = [GNU_TIME, "-f", "%M", "-o", rss_path] + [str(a) for a in argv]
        t0 = time.perf_counter()
        pid = os.posix_spawn(
            GNU_TIME,
            full,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
        )
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    finally:
        os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    try:
        # On failure GNU time writes "Command exited with ..." first.
        rss_kib = int(Path(rss_path).read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        rss_kib = None
    if code == 0 and rss_kib is None:
        raise StepFailed(f"no peak RSS from {GNU_TIME} for `{shlex.join(str(a) for a in argv)}`")
    if code != 0:
        tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-5:]
        raise StepFailed(
            f"`{shlex.join(str(a) for a in argv)}` exited with {code}: "
            + " | ".join(tail)
        )
    return Sample(wall, ru.ru_utime + ru.ru_stime, rss_kib)


def run_job(steps, log_path):
    total = Sample()
    for argv in steps:
        total = total.add(run_step(argv, log_path))
    return total


def sh(argv, **kw):
    """Untimed helper command; fails loudly."""
    r = subprocess.run(
        [str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )
    if r.returncode != 0:
        die(
            f"`{shlex.join(str(a) for a in argv)}` failed ({r.returncode}): "
            + r.stderr.decode(errors="replace").strip()
        )
    return r.stdout.decode(errors="replace")


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


# ---------------------------------------------------------------- checking


def baseline_kind(version_text):
    """From `depmod --version`'s first line ("kmod version 34.2"): the
    kmodidx --compat that writes what that depmod writes, and the index files
    it writes."""
    words = version_text.split()
    try:
        major = int(words[2].split(".")[0]) if words[:2] == ["kmod", "version"] else None
    except (IndexError, ValueError):
        major = None
    if major is None:
        die(f"cannot tell the baseline's kmod version from `depmod --version`: {version_text!r}")
    if major < 33:
        return "kmod30", KMOD30_FILES
    files = sorted(KMOD30_FILES + ["modules.weakdep"])
    return ("kmod33" if major == 33 else "kmod34"), files


def compare_dirs(kmodidx_dir, depmod_dir, files):
    """Returns a list of problems (empty when all `files` are identical)."""
    problems = []
    produced = sorted(
        p.name for p in Path(kmodidx_dir).iterdir() if p.name.startswith("modules.")
    ) if Path(kmodidx_dir).is_dir() else []
    if produced != files:
        problems.append(f"kmodidx wrote {produced}, expected {files}")
    for name in files:
        a, b = Path(kmodidx_dir) / name, Path(depmod_dir) / name
        if not b.is_file():
            problems.append(f"depmod did not write {name}")
        elif not a.is_file():
            continue
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{name} differs")
    return problems


def tar_members(tar_path, kver):
    """modules.* files under <...>/modules/<kver>/ in a tar: name -> bytes."""
    found = {}
    with tarfile.open(tar_path) as tf:
        for m in tf:
            parts = m.name.rstrip("/").split("/")
            if len(parts) >= 3 and parts[-2] == kver and parts[-3] == "modules":
                if m.isfile():
                    found[parts[-1]] = tf.extractfile(m).read()
    return found


def compare_tar(idx_tar, kver, depmod_dir, expected):
    try:
        files = tar_members(idx_tar, kver)
    except (tarfile.TarError, OSError) as e:
        return [f"{idx_tar}: not a readable tar: {e}"]
    problems = []
    names = sorted(n for n in files if n.startswith("modules."))
    if names != expected:
        problems.append(f"idx.tar holds {names}, expected {expected}")
    for name in expected:
        ref = Path(depmod_dir) / name
        if name in files and ref.is_file() and files[name] != ref.read_bytes():
            problems.append(f"{name} differs")
    return problems


# ---------------------------------------------------------------- workloads


class Workload:
    """One input, benchmarked with both tools.

    Subclasses provide prepare_*() (untimed, before each run), the timed
    steps, and check() comparing the two outputs of the latest runs.
    """

    group = ""
    key = ""
    title = ""
    modules = 0
    unavailable = None  # reason, when kmodidx cannot run this workload yet

    def setup(self):
        pass

    def detect(self):
        pass


class TreeWorkload(Workload):
    """An unpacked module tree: `kmodidx build` vs `depmod -b`."""

    def __init__(self, ctx, group, key, title, root, kver, modules):
        self.ctx, self.group, self.key, self.title = ctx, group, key, title
        self.root, self.kver, self.modules = Path(root), kver, modules
        self.wdir = ctx.workdir / "runs" / key
        self.copy = self.wdir / "depmod-root"
        self.out = self.wdir / "kmodidx-out"

    def setup(self):
        rmtree(self.wdir)
        self.wdir.mkdir(parents=True)
        # depmod writes into the tree it indexes: give it a private copy.
        sh(["cp", "-a", self.root, self.copy])

    def kmodidx_dir(self):
        return self.out / "lib/modules" / self.kver

    def depmod_dir(self):
        return self.copy / "lib/modules" / self.kver

    def prepare_kmodidx(self):
        rmtree(self.out)

    def prepare_depmod(self):
        for name in self.ctx.files:
            p = self.depmod_dir() / name
            if p.exists():
                p.unlink()

    def kmodidx_steps(self):
        return [[self.ctx.kmodidx, "build", "--from", self.root, "--out", self.out,
                 "--compat", self.ctx.compat, *self.ctx.manifest_args]]

    def depmod_steps(self):
        return [[self.ctx.depmod, "-b", self.copy, "-C", "/nonexistent", self.kver]]

    def check(self):
        return compare_dirs(self.kmodidx_dir(), self.depmod_dir(), self.ctx.files)


class ArchiveWorkload(Workload):
    """rootfs.tar.zst -> idx.tar, against tar -x + depmod -b + tar -c."""

    def __init__(self, ctx, group, key, title, src_root, kver, modules):
        self.ctx, self.group, self.key, self.title = ctx, group, key, title
        self.src_root, self.kver, self.modules = Path(src_root), kver, modules
        self.wdir = ctx.workdir / "runs" / key
        self.archive = ctx.workdir / "archives" / f"{key}-rootfs.tar.zst"
        self.idx_tar = self.wdir / "kmodidx-idx.tar"
        self.xdir = self.wdir / "depmod-root"
        self.depmod_tar = self.wdir / "depmod-idx.tar"

    def setup(self):
        rmtree(self.wdir)
        self.wdir.mkdir(parents=True)
        stamp = self.archive.with_suffix(".stamp")
        want = f"{self.ctx.stamp_of(self.src_root)}\n"
        if not (self.archive.is_file() and stamp.is_file() and stamp.read_text() == want):
            self.archive.parent.mkdir(parents=True, exist_ok=True)
            log(f"  packing {self.archive.name} from {self.src_root}")
            tmp = self.archive.with_suffix(".tmp")
            # A reproducible rootfs archive, as mmdebstrap would write it
            # (./-prefixed names), compressed with zstd's default level.
            sh(["sh", "-c",
                'tar --sort=name --format=gnu --mtime=@0 --owner=0 --group=0 '
                '--numeric-owner -C "$0" -cf - . | zstd -q -3 -T1 -o "$1" -f',
                self.src_root, tmp])
            tmp.rename(self.archive)
            stamp.write_text(want)

    def detect(self):
        """Tries the archive form once; sets self.unavailable if it fails."""
        log_path = self.wdir / "detect.log"
        try:
            self.prepare_kmodidx()
            run_job(self.kmodidx_steps(), log_path)
        except StepFailed as e:
            self.unavailable = str(e)
            return
        if not self.idx_tar.is_file():
            self.unavailable = "kmodidx exited 0 but wrote no idx.tar"
            return
        try:
            tar_members(self.idx_tar, self.kver)
        except (tarfile.TarError, OSError) as e:
            self.unavailable = f"kmodidx wrote an unreadable idx.tar: {e}"

    def prepare_kmodidx(self):
        if self.idx_tar.exists():
            self.idx_tar.unlink()

    def prepare_depmod(self):
        rmtree(self.xdir)
        self.xdir.mkdir()
        if self.depmod_tar.exists():
            self.depmod_tar.unlink()

    def kmodidx_steps(self):
        return [[self.ctx.kmodidx, "build", "--from", self.archive, "--out", self.idx_tar,
                 "--compat", self.ctx.compat, *self.ctx.manifest_args]]

    def depmod_steps(self):
        rel = [f"./lib/modules/{self.kver}/{n}" for n in self.ctx.files]
        return [
            ["tar", "-x", "--zstd", "-f", self.archive, "-C", self.xdir],
            [self.ctx.depmod, "-b", self.xdir, "-C", "/nonexistent", self.kver],
            ["tar", "-c", "-f", self.depmod_tar, "-C", self.xdir] + rel,
        ]

    def check(self):
        return compare_tar(self.idx_tar, self.kver, self.xdir / "lib/modules" / self.kver,
                           self.ctx.files)


# ---------------------------------------------------------------- context


class Context:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir).resolve()
        self.kmodidx = REPO / "target/release/kmodidx"
        # kmodidx runs as a user runs it: with its default manifest, whose
        # input digest covers the parts of each module depmod parses.
        # --no-manifest measures the same work as depmod's; --input-digest
        # whole hashes every module file whole.
        if args.no_manifest:
            self.manifest_args = ["--no-manifest"]
        elif args.input_digest:
            self.manifest_args = ["--input-digest", args.input_digest]
        else:
            self.manifest_args = []
        self.debs = Path(args.debs).resolve() if args.debs else None
        self.fixturegen = REPO / "target/release/kmodidx-fixturegen"
        self.depmod = args.depmod
        self.depmod_version = "unknown"
        self.compat, self.files = "kmod30", KMOD30_FILES
        self.corpus = Path(args.corpus).resolve()

    @staticmethod
    def stamp_of(path):
        st = Path(path).stat()
        return f"{path} {st.st_size} {st.st_mtime_ns}"

    def unpack_deb(self, deb):
        """Unpacks a kernel .deb once into the work dir; returns its root."""
        root = self.workdir / "corpus" / deb.name.split("_")[0]
        stamp = root.with_name(root.name + ".stamp")
        want = f"{self.stamp_of(deb)}\n"
        if root.is_dir() and stamp.is_file() and stamp.read_text() == want:
            return root
        log(f"  unpacking {deb.name}")
        rmtree(root)
        if stamp.exists():
            stamp.unlink()
        root.mkdir(parents=True)
        sh(["dpkg-deb", "-x", deb, root])
        stamp.write_text(want)
        return root

    def module_count_plain(self, root, kver):
        n = 0
        for _, _, files in os.walk(Path(root) / "lib/modules" / kver):
            n += sum(1 for f in files if f.endswith(".ko"))
        return n

    def module_count(self, root, kver):
        n = 0
        for _, _, files in os.walk(Path(root) / "lib/modules" / kver):
            n += sum(1 for f in files if ".ko" in f and f.split(".ko", 1)[1] in
                     ("", ".xz", ".gz", ".zst"))
        return n


def kernel_of(root):
    versions = sorted(os.listdir(Path(root) / "lib/modules"))
    if len(versions) != 1:
        die(f"{root}: expected one kernel under lib/modules, found {versions}")
    return versions[0]


def corpus_workloads(ctx, wanted):
    if not wanted & {"kernel-6.1", "kernel-6.12", "archive-6.1", "archive-6.12"}:
        return []
    debs = sorted((ctx.corpus / "debian").glob("linux-image-*.deb"))
    if not debs:
        die(f"no linux-image-*.deb in {ctx.corpus / 'debian'}")
    out = {}
    for deb in debs:
        kver = deb.name.split("_")[0].removeprefix("linux-image-").removesuffix("-unsigned")
        short = ".".join(kver.split(".")[:2])  # 6.1, 6.12
        keys = {f"kernel-{short}", f"archive-{short}"}
        if not keys & wanted:
            continue
        root = ctx.unpack_deb(deb)
        kver = kernel_of(root)
        n = ctx.module_count(root, kver)
        comp = "plain .ko" if short == "6.1" else ".ko.xz"
        for k in sorted(keys & wanted):
            if k.startswith("kernel-"):
                out[k] = TreeWorkload(ctx, "kernel", k,
                                      f"Debian {kver} ({n} {comp}), unpacked tree",
                                      root, kver, n)
            else:
                out[k] = ArchiveWorkload(ctx, "archive", k,
                                         f"rootfs.tar.zst → idx.tar, Debian {kver} ({n} {comp})",
                                         root, kver, n)
    # Unpacked trees first, then archives; each in kernel version order.
    return [out[k] for k in sorted(out, key=lambda k: (k.startswith("archive"),
                                                       [int(x) for x in k.split("-")[1].split(".")]))]


def deb_parts(deb):
    """(kernel version, short version, flavour) from a linux-image .deb name."""
    kver = deb.name.split("_")[0].removeprefix("linux-image-").removesuffix("-unsigned")
    short = ".".join(kver.split(".")[:2])  # 6.1, 6.12
    # 6.1.0-56-amd64 -> amd64; 6.12.115+deb12-cloud-amd64 -> cloud-amd64
    parts = kver.split("-")
    flavour = "-".join(parts[2:] if len(parts) > 2 and parts[1].isdigit() else parts[1:])
    return kver, short, flavour


def extra_keys(ctx):
    """Workload keys of the kernel packages in --debs."""
    if ctx.debs is None:
        return []
    return sorted({f"kernel-{deb_parts(d)[1]}-{deb_parts(d)[2]}"
                   for d in ctx.debs.glob("linux-image-*.deb")})


def extra_workloads(ctx, wanted):
    """Unpacked trees of the kernel packages in --debs (the big amd64
    kernels of issue #10): `kernel-SHORT-FLAVOUR`."""
    if ctx.debs is None:
        return []
    out = []
    for deb in sorted(ctx.debs.glob("linux-image-*.deb")):
        _, short, flavour = deb_parts(deb)
        key = f"kernel-{short}-{flavour}"
        if key not in wanted:
            continue
        root = ctx.unpack_deb(deb)
        kver = kernel_of(root)
        n = ctx.module_count(root, kver)
        comp = "plain .ko" if ctx.module_count_plain(root, kver) == n else "compressed .ko"
        out.append(TreeWorkload(ctx, "kernel", key,
                                f"Debian {kver} ({n} {comp}), unpacked tree", root, kver, n))
    return out


def scale_workloads(ctx, sizes):
    out = []
    gdir = ctx.workdir / "scale"
    gdir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        t0 = time.perf_counter()
        sh([ctx.fixturegen, "scale", str(n), gdir])
        log(f"  generated scale-{n} in {time.perf_counter() - t0:.1f} s")
        out.append(TreeWorkload(ctx, "scale", f"scale-{n}",
                                f"synthetic, {n} plain .ko", gdir / f"scale-{n}",
                                SCALE_KVER, n))
    return out


# ---------------------------------------------------------------- measuring


class Result:
    def __init__(self, wl):
        self.wl = wl
        self.kmodidx = []
        self.depmod = []
        self.problems = []
        self.error = None

    @property
    def ok(self):
        return not self.problems and not self.error and not self.wl.unavailable


def measure(ctx, wl, warmup, runs):
    res = Result(wl)
    if wl.unavailable:
        return res
    log_path = wl.wdir / "run.log"
    tools = [
        ("kmodidx", wl.prepare_kmodidx, wl.kmodidx_steps, res.kmodidx),
        ("depmod", wl.prepare_depmod, wl.depmod_steps, res.depmod),
    ]
    for i in range(warmup + runs):
        measured = i >= warmup
        # Alternate which tool goes first so slow drifts in machine load hit
        # both alike.
        order = tools if i % 2 == 0 else tools[::-1]
        this = {}
        try:
            for name, prepare, steps, samples in order:
                prepare()
                # Flush dirty pages (ours and anyone else's) before the timed
                # run, so neither tool pays for earlier writes.
                os.sync()
                this[name] = run_job(steps(), log_path)
                if measured:
                    samples.append(this[name])
        except StepFailed as e:
            res.error = str(e)
            return res
        problems = wl.check()
        if problems:
            res.problems = problems
            return res
        label = f"run {i + 1 - warmup}" if measured else f"warm-up {i + 1}"
        detail = "  ".join(f"{n} {this[n].wall:.3f}s wall {this[n].cpu:.3f}s cpu"
                           for n in ("kmodidx", "depmod"))
        log(f"    {label}: outputs identical; {detail}")
    return res


# ---------------------------------------------------------------- reporting


def med(values):
    return statistics.median(values) if values else float("nan")


def fmt_stat(values, unit):
    if not values:
        return "–"
    if unit == "s":
        f = lambda v: f"{v:.3f}"  # noqa: E731
    else:
        f = lambda v: f"{v:.1f}"  # noqa: E731
    return f"{f(med(values))} ({f(min(values))}–{f(max(values))})"


def metrics(samples):
    return {
        "wall": [s.wall for s in samples],
        "cpu": [s.cpu for s in samples],
        "rss": [s.rss_kib / 1024 for s in samples],
    }


def ratio(res, metric):
    a = med(metrics(res.depmod)[metric])
    b = med(metrics(res.kmodidx)[metric])
    return a / b if b else float("nan")


def min_ratio(res, metric):
    """Ratio of the fastest runs: less sensitive to competing load."""
    a = min(metrics(res.depmod)[metric])
    b = min(metrics(res.kmodidx)[metric])
    return a / b if b else float("nan")


def status_word(ok):
    return "met" if ok else "**not met**"


def workload_table(res, depmod_label):
    m_k, m_d = metrics(res.kmodidx), metrics(res.depmod)
    rows = [
        "| metric | kmodidx median (min–max) | "
        f"{depmod_label} median (min–max) | ratio {depmod_label}/kmodidx |",
        "|---|---|---|---|",
    ]
    for key, label, unit in (("wall", "wall time, s", "s"),
                             ("cpu", "CPU time (user+sys), s", "s"),
                             ("rss", "peak RSS, MiB", "MiB")):
        rows.append(f"| {label} | {fmt_stat(m_k[key], unit)} | {fmt_stat(m_d[key], unit)} "
                    f"| {ratio(res, key):.2f}× |")
    return rows


def evaluate(results):
    """Returns (rows of the targets table, list of (name, passed) for scale)."""
    targets = []
    by_key = {r.wl.key: r for r in results}

    def unavailable_row(name, want, r):
        if r.wl.unavailable:
            return (name, f"≥ {want}×", "not available yet", "not available yet")
        if not r.ok:
            return (name, f"≥ {want}×", "output mismatch / error", "**not met**")
        return None

    def speed_row(name, want, r):
        """The row of a wall-time ratio target."""
        row = unavailable_row(name, want, r)
        if row:
            return row
        got = ratio(r, "wall")
        return (name, f"≥ {want}×", f"{got:.2f}× (fastest runs: {min_ratio(r, 'wall'):.2f}×)",
                status_word(got >= want))

    kernel_keys = sorted((k for k in by_key if k.startswith("kernel-")),
                         key=lambda k: (k.count("-"), [int(x) for x in k.split("-")[1].split(".")]))
    for key in kernel_keys:
        r = by_key[key]
        want = TARGET_RATIO.get(key)
        if want is None:
            continue
        short = key.removeprefix("kernel-").replace("-", " ")
        issue = TARGET_ISSUE[key]
        name = f"{short} unpacked: kmodidx ≥ {want}× faster than depmod (wall; issue #{issue})"
        targets.append(speed_row(name, want, r))
        if unavailable_row(name, want, r):
            continue
        k, d = med(metrics(r.kmodidx)["rss"]), med(metrics(r.depmod)["rss"])
        targets.append((f"{short} unpacked: peak RSS ≤ depmod's", "≤ 1.00× depmod",
                        f"{k:.1f} vs {d:.1f} MiB ({k / d:.2f}×)", status_word(k <= d)))
    for short in ("6.1", "6.12"):
        r = by_key.get(f"archive-{short}")
        if r is None:
            continue
        want = TARGET_RATIO["archive"]
        name = f"{short} rootfs.tar.zst → idx.tar: ≥ {want}× faster than tar x + depmod + tar c"
        targets.append(speed_row(name, want, r))

    scale = sorted((r for r in results if r.wl.group == "scale"), key=lambda r: r.wl.modules)
    if scale:
        lo, hi = (scale[0], scale[-1])
        name = (f"synthetic: kmodidx wall per module at {hi.wl.modules} within "
                f"±{LINEARITY_TOLERANCE:.0%} of {lo.wl.modules}")
        if len(scale) < 2 or lo is hi:
            targets.append((name, "±30%", "needs two sizes", "not measured"))
        elif lo.ok and hi.ok:
            per_lo = med(metrics(lo.kmodidx)["wall"]) / lo.wl.modules
            per_hi = med(metrics(hi.kmodidx)["wall"]) / hi.wl.modules
            rel = per_hi / per_lo
            rel_min = ((min(metrics(hi.kmodidx)["wall"]) / hi.wl.modules)
                       / (min(metrics(lo.kmodidx)["wall"]) / lo.wl.modules))
            targets.append((name, "0.70–1.30",
                            f"{per_hi * 1e6:.1f} vs {per_lo * 1e6:.1f} µs/module ({rel:.2f}; "
                            f"fastest runs: {rel_min:.2f})",
                            status_word(abs(rel - 1) <= LINEARITY_TOLERANCE)))
        else:
            targets.append((name, "0.70–1.30", "output mismatch / error", "**not met**"))
        big = scale[-1]
        name = f"synthetic {big.wl.modules}: kmodidx peak RSS < 1 GiB"
        if big.ok:
            rss = max(metrics(big.kmodidx)["rss"])
            targets.append((name, "< 1024 MiB", f"{rss:.1f} MiB (max of runs)",
                            status_word(rss * 1024 * 1024 < GIB)))
        else:
            targets.append((name, "< 1024 MiB", "output mismatch / error", "**not met**"))
    return targets


def scale_table(results, depmod_label):
    scale = sorted((r for r in results if r.wl.group == "scale" and r.ok),
                   key=lambda r: r.wl.modules)
    if not scale:
        return []
    base = med(metrics(scale[0].kmodidx)["wall"]) / scale[0].wl.modules
    rows = [
        "| modules | kmodidx wall, s | kmodidx µs/module | vs smallest | marginal µs/module | "
        "kmodidx CPU µs/module | "
        f"{depmod_label} wall, s | {depmod_label} µs/module | {depmod_label} CPU µs/module | "
        "wall ratio | "
        f"kmodidx peak RSS, MiB | {depmod_label} peak RSS, MiB |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    prev = None
    for r in scale:
        n = r.wl.modules
        k, d = metrics(r.kmodidx), metrics(r.depmod)
        pk, pd = med(k["wall"]) / n, med(d["wall"]) / n
        # Cost of the modules added since the previous size: startup and
        # other fixed costs cancel out.
        marginal = "–"
        if prev is not None:
            pn, pw = prev
            marginal = f"{(med(k['wall']) - pw) / (n - pn) * 1e6:.1f}"
        prev = (n, med(k["wall"]))
        rows.append(f"| {n} | {fmt_stat(k['wall'], 's')} | {pk * 1e6:.1f} | {pk / base:.2f} "
                    f"| {marginal} | {med(k['cpu']) / n * 1e6:.1f} "
                    f"| {fmt_stat(d['wall'], 's')} | {pd * 1e6:.1f} | {med(d['cpu']) / n * 1e6:.1f} "
                    f"| {ratio(r, 'wall'):.2f}× "
                    f"| {fmt_stat(k['rss'], 'MiB')} | {fmt_stat(d['rss'], 'MiB')} |")
    return rows


def machine_info(ctx, load_start):
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    depmod_version = ctx.depmod_version
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                            "--", "src", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    return [
        f"* date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"* CPU: {model}; {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable by this process)",
        f"* kernel: {platform.system()} {platform.release()} ({platform.machine()})",
        f"* load average (1 min) at start / end: {load_start:.2f} / {os.getloadavg()[0]:.2f}",
        f"* kmodidx: commit {head}"
        + (" **plus uncommitted changes in src/ or Cargo files**" if dirty else "")
        + f", `cargo build --release`, {rustc}",
        f"* baseline: `{ctx.depmod}` ({depmod_version}), GNU tar + zstd for the archive rows",
    ]


def busy_warning(load_start):
    cores = os.cpu_count() or 1
    load = max(load_start, os.getloadavg()[0])
    if load < 0.5 * cores:
        return []
    return ["", f"**The machine was busy** (load average up to {load:.2f} on {cores} cores): "
            "other processes competed for the cores, so wall times and ratios are noisy. "
            "Rerun on an idle machine for numbers to compare against the targets."]


def write_report(ctx, results, targets, command, load_start, params):
    depmod_label = "depmod"
    lines = [
        "# Benchmarks",
        "",
        "kmodidx (`" + shlex.join(["kmodidx", "build", "--compat", ctx.compat,
                                   *ctx.manifest_args]) + "`"
        + (", the same work as depmod does" if ctx.args.no_manifest else
           ", with its default manifest" if not ctx.manifest_args else "")
        + f") against `{ctx.depmod}` ({ctx.depmod_version}),",
        "run side by side on the same inputs in the same run. Produced by",
        "",
        "```",
        command,
        "```",
        "",
        f"{params}. Every run's output was compared: all {len(ctx.files)} files this depmod "
        "writes are "
        "byte-identical between the two tools wherever timings are shown. "
        "Times are medians with min–max in parentheses; ratios are depmod's median over "
        "kmodidx's (above 1 means kmodidx is faster or smaller). Page cache warm; "
        "`sync` before every timed run. See bench/README.md.",
        "",
        "## Machine",
        "",
    ] + machine_info(ctx, load_start) + busy_warning(load_start) + [
        "",
        "## Targets (issues #5 and #10)",
        "",
        "| target | wanted | measured | status |",
        "|---|---|---|---|",
    ]
    for t in targets:
        lines.append("| " + " | ".join(str(x) for x in t) + " |")
    lines.append("")

    for r in results:
        if r.wl.group == "scale":
            continue
        lines += [f"## {r.wl.title}", ""]
        if r.wl.unavailable:
            lines += ["**Not available yet**: `kmodidx build --from X.tar.zst --out Y.tar` "
                      "failed when tried once:", "", "```",
                      r.wl.unavailable[:800], "```", ""]
            continue
        if not r.ok:
            lines += ["**No timings: " + ("error" if r.error else "outputs differ") + "**", "",
                      "```"] + ([r.error] if r.error else r.problems) + ["```", ""]
            continue
        if r.wl.group == "archive":
            lines += ["Baseline: `tar -x --zstd` + `depmod -b ROOT -C /nonexistent VERSION` + "
                      "`tar -c` of the 10 index files; its CPU time and peak RSS cover all "
                      "three steps (zstd included).", ""]
        label = "tar x + depmod + tar c" if r.wl.group == "archive" else depmod_label
        lines += workload_table(r, label) + [""]

    scale = [r for r in results if r.wl.group == "scale"]
    if scale:
        lines += ["## Synthetic scale series", "",
                  "Trees from `kmodidx-fixturegen scale N` (see fixtures/gen/src/scale.rs), "
                  "plain .ko.", ""]
        lines += scale_table(results, depmod_label) + [""]
        for r in scale:
            if r.error or r.problems:
                lines += [f"**{r.wl.key}: no timings**", "", "```"]
                lines += [r.error] if r.error else r.problems
                lines += ["```", ""]
    out = Path(ctx.args.output)
    if not out.is_absolute():
        out = REPO / out
    out.write_text("\n".join(lines))
    log(f"wrote {out}")


def print_summary(results, targets):
    print()
    for r in results:
        print(f"== {r.wl.title}")
        if r.wl.unavailable:
            print(f"   not available yet: {r.wl.unavailable.splitlines()[0][:300]}")
            continue
        if not r.ok:
            print("   ERROR: " + (r.error or "; ".join(r.problems)))
            continue
        for key, label, unit in (("wall", "wall s", "s"), ("cpu", "cpu s ", "s"),
                                 ("rss", "rss MiB", "MiB")):
            m_k, m_d = metrics(r.kmodidx), metrics(r.depmod)
            print(f"   {label:8} kmodidx {fmt_stat(m_k[key], unit):26} "
                  f"depmod {fmt_stat(m_d[key], unit):26} ratio {ratio(r, key):.2f}x")
    print()
    for name, want, got, st in targets:
        word = {"met": "PASS", "**not met**": "FAIL"}.get(st, st.upper())
        print(f"{word:18} {name}: {got} (wanted {want})")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 warm-up + 2 measured runs (unless --warmup/--runs say otherwise)")
    ap.add_argument("--warmup", type=int, help="warm-up runs per tool and workload (default 1)")
    ap.add_argument("--runs", type=int, help="measured runs per tool and workload (default 5)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only these workloads (repeatable; comma lists allowed): "
                         "kernel-6.1, kernel-6.12, archive-6.1, archive-6.12, scale")
    ap.add_argument("--sizes", default=",".join(map(str, SCALE_SIZES)),
                    help="synthetic tree sizes (default %(default)s)")
    ap.add_argument("--workdir", default=os.environ.get("KMODIDX_BENCH_DIR",
                                                          "/tmp/kmodidx-bench"),
                    help="scratch/cache directory (default $KMODIDX_BENCH_DIR or %(default)s)")
    ap.add_argument("--corpus", default=os.environ.get("KMODIDX_CORPUS",
                                                         str(REPO.parent / "shared/corpus")),
                    help="kernel corpus (default $KMODIDX_CORPUS or ../shared/corpus)")
    ap.add_argument("--depmod", default="/sbin/depmod", help="baseline depmod (default %(default)s)")
    ap.add_argument("--output", default="BENCHMARKS.md",
                    help="report file, relative to the repo root (default %(default)s)")
    ap.add_argument("--no-manifest", action="store_true",
                    help="run kmodidx with --no-manifest (the same work as depmod); by default "
                         "it writes its default manifest")
    ap.add_argument("--input-digest", choices=["parsed", "whole"],
                    help="run kmodidx with --input-digest SCOPE (default: its default, parsed)")
    ap.add_argument("--debs", default=os.environ.get("KMODIDX_BENCH_DEBS"),
                    help="a directory of further linux-image-*.deb (the big amd64 kernels of "
                         "issue #10; default $KMODIDX_BENCH_DEBS): workloads kernel-SHORT-FLAVOUR")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--keep", action="store_true",
                    help="keep each workload's outputs and depmod copies in WORKDIR/runs/")
    args = ap.parse_args()

    warmup = args.warmup if args.warmup is not None else 1
    runs = args.runs if args.runs is not None else (2 if args.quick else 5)
    if runs < 1 or warmup < 0:
        die("--runs must be ≥ 1 and --warmup ≥ 0")
    if args.no_manifest and args.input_digest:
        die("--no-manifest and --input-digest exclude each other")
    if args.debs and not Path(args.debs).is_dir():
        die(f"--debs {args.debs}: not a directory")
    all_keys = ["kernel-6.1", "kernel-6.12", "archive-6.1", "archive-6.12", "scale"]
    if args.debs:
        all_keys += extra_keys(Context(args))
    wanted = set()
    for item in args.only:
        wanted |= {w.strip() for w in item.split(",") if w.strip()}
    if not wanted:
        wanted = set(all_keys)
    if wanted - set(all_keys):
        die(f"unknown workload(s) {sorted(wanted - set(all_keys))}; known: {all_keys}")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})

    command = shlex.join(["bench/run.sh"] + sys.argv[1:])
    load_start = os.getloadavg()[0]
    ctx = Context(args)

    for tool in ("cargo", "tar", "zstd", "dpkg-deb", "cp"):
        if shutil.which(tool) is None:
            die(f"`{tool}` not found in PATH")
    if not os.access(GNU_TIME, os.X_OK):
        die(f"{GNU_TIME} not found: apt-get install -y time")
    if not os.access(ctx.depmod, os.X_OK):
        die(f"{ctx.depmod} not found: apt-get install -y kmod")
    try:
        ctx.depmod_version = subprocess.run([ctx.depmod, "--version"], capture_output=True,
                                            text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        die(f"`{ctx.depmod} --version` printed nothing")
    ctx.compat, ctx.files = baseline_kind(ctx.depmod_version)

    if not args.no_build:
        log("building: cargo build --release")
        builds = [["cargo", "build", "--release", "--quiet"]]
        if "scale" in wanted:
            builds.append(["cargo", "build", "--release", "--quiet", "-p", "kmodidx-fixturegen"])
        for argv in builds:
            if subprocess.run(argv, cwd=REPO).returncode != 0:
                die(f"`{shlex.join(argv)}` failed")
    for binary in [ctx.kmodidx] + ([ctx.fixturegen] if "scale" in wanted else []):
        if not binary.is_file():
            die(f"{binary} missing (run without --no-build)")

    ctx.workdir.mkdir(parents=True, exist_ok=True)
    log(f"preparing inputs in {ctx.workdir}")
    workloads = corpus_workloads(ctx, wanted) + extra_workloads(ctx, wanted)
    if "scale" in wanted:
        workloads += scale_workloads(ctx, sizes)

    results = []
    for wl in workloads:
        log(f"== {wl.key}: {wl.title}")
        wl.setup()
        wl.detect()
        if wl.unavailable:
            log(f"   not available yet: {wl.unavailable.splitlines()[0][:300]}")
        results.append(measure(ctx, wl, warmup, runs))
        if not args.keep:
            rmtree(wl.wdir)

    targets = evaluate(results)
    params = f"{warmup} warm-up + {runs} measured run(s) per tool and workload"
    write_report(ctx, results, targets, command, load_start, params)
    print_summary(results, targets)
    bad = [r for r in results if r.error or r.problems]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
