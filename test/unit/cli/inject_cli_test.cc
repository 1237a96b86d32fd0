// inject_cli_test.cc: ch-run --inject[=SET,...] into RunOptions.
#include <doctest/doctest.h>

#include "run_cli.hh"
#include "util/error.hh"

using namespace ch;

namespace {
run::RunOptions parse_inject(std::initializer_list<const char*> args) {
    std::vector<const char*> argv = {"ch-run"};
    argv.insert(argv.end(), args.begin(), args.end());
    return cli::to_run_options(
        cli::parse(cli::run_spec(), static_cast<int>(argv.size()), argv.data()));
}
} // namespace

TEST_CASE("ch-run --inject: every set, named sets, or none") {
    CHECK_FALSE(parse_inject({"img", "--", "true"}).inject.has_value());
    const auto all = parse_inject({"--inject", "img", "--", "true"});
    REQUIRE(all.inject.has_value());
    CHECK(all.inject->empty());
    CHECK(parse_inject({"--inject=mpi,gpu", "img", "--", "true"}).inject ==
          std::vector<std::string>{"mpi", "gpu"});
    CHECK(parse_inject({"--inject=mpi,,", "img", "--", "true"}).inject ==
          std::vector<std::string>{"mpi"});
    // The value is attached only: a separate word is the image.
    const auto o = parse_inject({"--inject", "mpi", "--", "true"});
    CHECK(o.inject->empty());
    CHECK(o.image_ref == "mpi");
}
