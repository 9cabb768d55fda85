// Shared by the examples' and benchmarks' main(): their command lines with CLI11, with the exit
// codes they document (0 after --help, 2 for a usage error: an unknown flag, a missing or malformed
// value, a failed check).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

namespace example_cli {

/// A flag's check: a number > 0 ("must be > 0, got V").
inline const CLI::Validator kPositive(
    [](std::string& v) {
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      return end != v.c_str() && *end == '\0' && x > 0 ? std::string() : "must be > 0, got " + v;
    },
    "POSITIVE");

/// Parses argv into `app`'s options, or exits: --help prints the help to stdout and exits 0; a usage
/// error prints "NAME: what" and the help to stderr and exits 2.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\n\n" << app.help();
    std::exit(2);
  }
}

}  // namespace example_cli
