// Streams one batch from a flat token file through the installed LibTorch-free core.
#include <groupmates/streaming_loader.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  groupmates::LoaderConfig config;
  groupmates::SourceConfig source;
  source.paths = {argv[1]};
  config.sources = {source};
  config.sequence_length = 8;
  config.batch_size = 2;
  groupmates::StreamingLoader loader(config);
  auto batch = loader.next();
  if (!batch) return 1;
  std::printf("consumer: batch [%u, %u], first token %lld\n", batch->batch_size, batch->sequence_length,
              static_cast<long long>(batch->tokens.get()[0]));
  return 0;
}
