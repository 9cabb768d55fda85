#!/usr/bin/python3
"""Extract Jane Austen's novels from the Debian package r-cran-janeaustenr, without R.

The package's lazy-load data is two files:
  data/Rdata.rdx  an index: an R-serialised list (gzip- or zlib-compressed) whose "variables"
                  element maps each object name to an integer vector (offset, length) into the .rdb;
  data/Rdata.rdb  records of a 4-byte big-endian uncompressed length followed by a zlib stream
                  holding one R-serialised object. Each novel is a character vector, one line each.
The reader below understands R's serialisation format 2 and 3 (XDR, "X\\n") far enough for that:
pairlists, character/integer/logical/double/list vectors, symbols and references.

Writes, atomically (temporary file in the output directory + rename):
  <out>/austen.jsonl          the corpus books, one JSON object per chunk of paragraphs
  <out>/austen_heldout.jsonl  the first chapters of the held-out book (never in the corpus)
  <out>/austen_train.txt      the corpus text, one paragraph per line (input for spm_train)
and prints a JSON summary (sizes, counts) on stdout. Standard library only.
"""
import argparse
import gzip
import json
import os
import re
import struct
import sys
import tempfile
import zlib

# ---------------------------------------------------------------------------------------------
# R serialisation (XDR) reader

NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 254, 253, 252, 251
BASENAMESPACE_SXP, EMPTYENV_SXP, BASEENV_SXP = 250, 242, 241
REFSXP, ALTREP_SXP, ATTRLISTSXP, ATTRLANGSXP = 255, 238, 239, 240
SYMSXP, LISTSXP, LANGSXP, CHARSXP = 1, 2, 6, 9
LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, EXPRSXP, RAWSXP = 10, 13, 14, 16, 19, 20, 24
NA_INTEGER = -2147483648


class RObject:
    """A vector or pairlist with attributes. `value` is a Python list (or dict for pairlists)."""

    def __init__(self, sexptype, value, attributes=None):
        self.sexptype = sexptype
        self.value = value
        self.attributes = attributes or {}

    def names(self):
        names = self.attributes.get("names")
        return names.value if isinstance(names, RObject) else None


class RSymbol(str):
    pass


class RReader:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.refs = []
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialisation (header %r)" % data[:2])
        self.pos = 2
        version, _writer, _min_reader = self.ints(3)
        if version not in (2, 3):
            raise ValueError("unsupported R serialisation version %d" % version)
        if version == 3:
            n = self.int()
            self.pos += n  # native encoding name

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def ints(self, n):
        v = struct.unpack_from(">%di" % n, self.data, self.pos)
        self.pos += 4 * n
        return v

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.ints(2)
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def attributes(self):
        pl = self.item()
        return pl.value if isinstance(pl, RObject) and pl.sexptype == LISTSXP else {}

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        levels = flags >> 12
        if t == NILVALUE_SXP:
            return None
        if t in (GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP, BASENAMESPACE_SXP, EMPTYENV_SXP, BASEENV_SXP):
            return RSymbol("<special %d>" % t)
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t == SYMSXP:
            sym = RSymbol(self.item() or "")
            self.refs.append(sym)
            return sym
        if t in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
            # A pairlist, read iteratively along its CDR chain: {tag: value}, in order.
            out, attrs = {}, {}
            i = 0
            while True:
                a = self.attributes() if has_attr else {}
                if not attrs:
                    attrs = a
                tag = self.item() if has_tag else None
                out[str(tag) if tag is not None else "[%d]" % i] = self.item()
                i += 1
                flags = self.int()
                t2 = flags & 0xFF
                if t2 == NILVALUE_SXP:
                    break
                if t2 not in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
                    self.pos -= 4
                    out["[cdr]"] = self.item()
                    break
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
            return RObject(LISTSXP, out, attrs)
        if t == CHARSXP:
            n = self.int()
            if n == -1:
                return None  # NA_character_
            raw = self.data[self.pos:self.pos + n]
            self.pos += n
            latin1 = bool(levels & (1 << 2))
            return raw.decode("latin-1" if latin1 else "utf-8", errors="replace")
        if t in (LGLSXP, INTSXP):
            n = self.length()
            v = [None if x == NA_INTEGER else x for x in self.ints(n)] if n else []
        elif t == REALSXP:
            n = self.length()
            v = list(struct.unpack_from(">%dd" % n, self.data, self.pos))
            self.pos += 8 * n
        elif t == STRSXP:
            n = self.length()
            v = [self.item() for _ in range(n)]
        elif t in (VECSXP, EXPRSXP):
            n = self.length()
            v = [self.item() for _ in range(n)]
        elif t == RAWSXP:
            n = self.length()
            v = self.data[self.pos:self.pos + n]
            self.pos += n
        else:
            raise ValueError("unsupported R object type %d at byte %d" % (t, self.pos - 4))
        attrs = self.attributes() if has_attr else {}
        return RObject(t, v, attrs)


def unserialize(blob):
    return RReader(blob).item()


def decompress_any(raw):
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    return zlib.decompress(raw)


class LazyLoadDb:
    """An R lazy-load database: name -> object, read on demand from the .rdb."""

    def __init__(self, rdb_path):
        if not rdb_path.endswith(".rdb"):
            raise ValueError("expected a .rdb path: %s" % rdb_path)
        self.rdb_path = rdb_path
        with open(rdb_path[:-4] + ".rdx", "rb") as f:
            index = unserialize(decompress_any(f.read()))
        names = index.names()
        variables = index.value[names.index("variables")]
        self.index = dict(zip(variables.names(), (tuple(v.value) for v in variables.value)))

    def names(self):
        return sorted(self.index)

    def get(self, name):
        offset, length = self.index[name]
        with open(self.rdb_path, "rb") as f:
            f.seek(offset)
            rec = f.read(length)
        (ulen,) = struct.unpack(">I", rec[:4])
        body = rec[4:]
        if body[:1] in (b"2", b"X", b"Z", b"0"):
            raise ValueError("%s: bzip2/xz/raw lazy-load compression is not supported" % name)
        data = zlib.decompress(body)
        if len(data) != ulen:
            raise ValueError("%s: record length %d, expected %d" % (name, len(data), ulen))
        return unserialize(data)


# ---------------------------------------------------------------------------------------------
# Novels -> chapters -> paragraphs -> documents

CHAPTER_RE = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\b\.?", re.IGNORECASE)
VOLUME_RE = re.compile(r"^\s*volume\s+([0-9]+|[ivxlc]+)\s*$", re.IGNORECASE)
ITALIC_RE = re.compile(r"(?<![\w_])_([^_\n]+?)_(?![\w_])")
END_RE = re.compile(r"^\s*(finis|the end)\s*$", re.IGNORECASE)


def chapters(lines):
    """Yields (chapter_number, [paragraph, ...]) of a novel given as its lines."""
    number, paragraphs, current = 0, [], []

    def flush_paragraph():
        if current:
            text = ITALIC_RE.sub(r"\1", " ".join(s.strip() for s in current))
            paragraphs.append(re.sub(r"\s+", " ", text).strip())
            current.clear()

    for line in lines:
        line = line or ""
        if CHAPTER_RE.match(line):
            flush_paragraph()
            if number and paragraphs:
                yield number, list(paragraphs)
            number, paragraphs = number + 1, []
            continue
        if number == 0 or VOLUME_RE.match(line) or END_RE.match(line):
            flush_paragraph()  # front matter, volume headings and the end mark are not text
            continue
        if line.strip():
            current.append(line)
        else:
            flush_paragraph()
    flush_paragraph()
    if number and paragraphs:
        yield number, paragraphs


def documents(book, lines, chunk_bytes, budget_bytes=None):
    """Chunks of consecutive paragraphs within a chapter, about chunk_bytes each (0: whole chapters).
    With budget_bytes, stops after the first whole chapter that reaches the budget."""
    total = 0
    for number, paras in chapters(lines):
        chunks, cur, size = [], [], 0
        for p in paras:
            plen = len(p.encode("utf-8"))
            if cur and chunk_bytes and size + plen > 2 * chunk_bytes // 1 and size >= chunk_bytes * 2 // 3:
                chunks.append(cur)
                cur, size = [], 0
            cur.append(p)
            size += plen + 2
            if chunk_bytes and size >= chunk_bytes:
                chunks.append(cur)
                cur, size = [], 0
        if cur:
            if chunks and chunk_bytes and size < chunk_bytes // 3:
                chunks[-1].extend(cur)  # a short tail joins the previous chunk of the chapter
            else:
                chunks.append(cur)
        for k, c in enumerate(chunks):
            text = "\n\n".join(c)
            total += len(text.encode("utf-8"))
            yield {"text": text, "source": "austen/" + book, "id": "%s/ch%02d/%02d" % (book, number, k)}, c
        if budget_bytes is not None and total >= budget_bytes:
            return


class AtomicWriter:
    """A text file written to a temporary name in the target directory, renamed on commit()."""

    def __init__(self, path):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
        self.f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def write(self, s):
        self.f.write(s)

    def commit(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.path)

    def abort(self):
        if not self.f.closed:
            self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rdb", required=True, help="path to janeaustenr's data/Rdata.rdb (the .rdx beside it)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--books", default="prideprejudice,persuasion", help="corpus books (R object names)")
    ap.add_argument("--heldout-book", default="emma")
    ap.add_argument("--heldout-bytes", type=int, default=300_000, help="whole chapters until this many bytes")
    ap.add_argument("--chunk-bytes", type=int, default=3000, help="target document size; 0 = one per chapter")
    ap.add_argument("--list", action="store_true", help="list the objects in the database and exit")
    args = ap.parse_args()

    db = LazyLoadDb(args.rdb)
    if args.list:
        for name in db.names():
            obj = db.get(name)
            print(name, obj.sexptype, len(obj.value))
        return 0

    books = [b for b in args.books.split(",") if b]
    if args.heldout_book in books:
        ap.error("the held-out book %r is also a corpus book" % args.heldout_book)
    for b in books + [args.heldout_book]:
        if b not in db.index:
            ap.error("no object %r in %s (have: %s)" % (b, args.rdb, ", ".join(db.names())))

    os.makedirs(args.out_dir, exist_ok=True)
    out = {n: AtomicWriter(os.path.join(args.out_dir, n))
           for n in ("austen.jsonl", "austen_heldout.jsonl", "austen_train.txt")}
    summary = {"books": {}, "heldout": {}}
    seen = set()
    try:
        for b in books:
            lines = db.get(b).value
            n_docs = n_bytes = n_chapters = 0
            chapter_ids = set()
            for doc, paras in documents(b, lines, args.chunk_bytes):
                out["austen.jsonl"].write(json.dumps(doc, ensure_ascii=False) + "\n")
                for p in paras:
                    out["austen_train.txt"].write(p + "\n")
                seen.add(doc["text"])
                n_docs += 1
                n_bytes += len(doc["text"].encode("utf-8"))
                chapter_ids.add(doc["id"].split("/")[1])
            n_chapters = len(chapter_ids)
            summary["books"][b] = {"lines": len(lines), "chapters": n_chapters, "docs": n_docs, "text_bytes": n_bytes}
        h = args.heldout_book
        lines = db.get(h).value
        n_docs = n_bytes = 0
        chapter_ids = []
        for doc, _ in documents(h, lines, args.chunk_bytes, budget_bytes=args.heldout_bytes):
            if doc["text"] in seen:
                raise SystemExit("held-out document %s also occurs in the corpus" % doc["id"])
            out["austen_heldout.jsonl"].write(json.dumps(doc, ensure_ascii=False) + "\n")
            n_docs += 1
            n_bytes += len(doc["text"].encode("utf-8"))
            ch = doc["id"].split("/")[1]
            if ch not in chapter_ids:
                chapter_ids.append(ch)
        summary["heldout"] = {h: {"lines": len(lines), "chapters": "%s-%s" % (chapter_ids[0], chapter_ids[-1]),
                                  "n_chapters": len(chapter_ids), "docs": n_docs, "text_bytes": n_bytes}}
        for w in out.values():
            w.commit()
    except BaseException:
        for w in out.values():
            w.abort()
        raise
    for n in out:
        summary[n] = os.path.getsize(os.path.join(args.out_dir, n))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
