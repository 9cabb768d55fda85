// examples/export_torchscript_encoder.py end to end: export from Python, load with
// TorchScriptEncoder, compare with the Python module's own (normalised) output on the same input.
// Needs a Python with torch (Debian's /usr/bin/python3, or $GROUPMATES_TORCH_PYTHON); skipped otherwise.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/torchscript_encoder.h"

namespace groupmates {
namespace {

namespace fs = std::filesystem;

std::string torch_python() {
  const char* env = std::getenv("GROUPMATES_TORCH_PYTHON");
  return env && *env ? env : "/usr/bin/python3";
}

// The repository root: $GROUPMATES_SOURCE_DIR, else two levels above this file.
fs::path source_dir() {
  const char* env = std::getenv("GROUPMATES_SOURCE_DIR");
  if (env && *env) return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

template <typename T>
std::vector<T> read_raw(const fs::path& path, size_t count) {
  std::vector<T> out(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in || in.peek() != EOF) ADD_FAILURE() << path << ": expected exactly " << count * sizeof(T) << " bytes";
  return out;
}

TEST(TorchScriptExport, PythonExportLoadsAndMatchesPythonOutput) {
  const std::string python = torch_python();
  const fs::path script = source_dir() / "examples" / "export_torchscript_encoder.py";
  if (!fs::exists(python))
    GTEST_SKIP() << python << " not found: a Python with torch is needed to export the encoder";
  if (!fs::exists(script)) GTEST_SKIP() << script << " not found (set GROUPMATES_SOURCE_DIR to the repository)";
  if (std::system(("'" + python + "' -c 'import torch' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import torch (Debian's python3-torch provides it)";

  const fs::path dir = fs::temp_directory_path() / ("groupmates_torchscript_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path model = dir / "encoder.pt", ref = dir / "ref";
  const int64_t dim = 48;
  const std::string command = "'" + python + "' '" + script.string() + "' --out '" + model.string() + "' --reference '" +
                              ref.string() + "' --dim " + std::to_string(dim) + " --rows 7 --length 40 >'" +
                              (dir / "log.txt").string() + "' 2>&1";
  const int rc = std::system(command.c_str());
  std::ifstream log_file(dir / "log.txt");
  const std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  ASSERT_EQ(rc, 0) << command << "\n" << log;

  int64_t rows = 0, length = 0, d = 0;
  std::ifstream shape(ref / "shape.txt");
  shape >> rows >> length >> d;
  ASSERT_EQ(rows, 7);
  ASSERT_EQ(length, 40);
  ASSERT_EQ(d, dim);
  std::vector<int64_t> ids = read_raw<int64_t>(ref / "ids.i64", size_t(rows * length));
  std::vector<uint8_t> mask = read_raw<uint8_t>(ref / "mask.u8", size_t(rows * length));
  std::vector<float> expected = read_raw<float>(ref / "expected.f32", size_t(rows * d));
  const torch::Tensor tokens = torch::from_blob(ids.data(), {rows, length}, torch::kLong).clone();
  const torch::Tensor keep = torch::from_blob(mask.data(), {rows, length}, torch::kUInt8).to(torch::kBool);
  const torch::Tensor want = torch::from_blob(expected.data(), {rows, d}, torch::kFloat).clone();
  ASSERT_LT(keep.sum().item<int64_t>(), rows * length) << "the sample should contain padding";

  TorchScriptEncoder encoder(model.string(), dim);
  const torch::Tensor got = encoder.encode(tokens, keep);
  ASSERT_EQ(got.sizes(), torch::IntArrayRef({rows, d}));
  EXPECT_TRUE(torch::allclose(got.norm(2, 1), torch::ones({rows}), 1e-5, 1e-5)) << got.norm(2, 1);
  const double diff = (got - want).abs().max().item<double>();
  std::printf("[torchscript] %lld x %lld -> %lld: max |C++ - Python| = %.3g\n", (long long)rows, (long long)length,
              (long long)d, diff);
  EXPECT_LT(diff, 1e-5);
  // Padding matters: the same ids without the mask give other embeddings for the padded rows.
  EXPECT_FALSE(torch::allclose(encoder.encode(tokens), want, 1e-4, 1e-4));

  // Through the relational model: embed() is the encoder's output, u is finite.
  RelationalInfluenceModel influence(std::make_shared<TorchScriptEncoder>(model.string(), dim));
  influence.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor h = influence.embed(tokens, keep);
  EXPECT_TRUE(torch::allclose(h, want, 1e-5, 1e-5));
  EXPECT_TRUE(torch::isfinite(influence.individual(h)).all().item<bool>());

  // A wrong declared width is reported when the encoder is built (its probe forward), naming the file.
  try {
    TorchScriptEncoder wrong(model.string(), dim + 1);
    ADD_FAILURE() << "a declared width of " << dim + 1 << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(model.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("width " + std::to_string(dim) + ", expected " + std::to_string(dim + 1)),
              std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace groupmates
