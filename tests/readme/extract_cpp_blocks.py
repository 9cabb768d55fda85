"""Writes every ```cpp block of a Markdown file to OUT_DIR/readme_block_<k>.cpp (k = 0, 1, ...), each a
whole program (a fragment with placeholder paths is fenced ```c++ instead, and not extracted); a file is rewritten only when its text changed (no needless rebuilds), stale ones
are removed. Prints the number of blocks. Used by tests/readme/CMakeLists.txt at configure time."""
import os
import re
import sys

markdown, out_dir = sys.argv[1], sys.argv[2]
blocks = re.findall(r"^```cpp\n(.*?)^```$", open(markdown).read(), flags=re.S | re.M)
os.makedirs(out_dir, exist_ok=True)
for k, code in enumerate(blocks):
    path = os.path.join(out_dir, f"readme_block_{k}.cpp")
    text = f"// Extracted from {os.path.basename(markdown)} (cpp block {k}); edit the README, not this file.\n" + code
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
for name in os.listdir(out_dir):
    m = re.fullmatch(r"readme_block_(\d+)\.cpp", name)
    if m and int(m.group(1)) >= len(blocks):
        os.remove(os.path.join(out_dir, name))
print(len(blocks), end="")
