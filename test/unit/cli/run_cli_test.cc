// run_cli_test.cc: ch-run's command line into RunOptions (bin/run_cli.cc).
#include <doctest/doctest.h>

#include "run_cli.hh"
#include "util/error.hh"

using namespace ch;

TEST_SUITE("cli") {

    namespace {
    run::RunOptions parse_run(std::initializer_list<const char*> args) {
        std::vector<const char*> argv = {"ch-run"};
        argv.insert(argv.end(), args.begin(), args.end());
        return cli::to_run_options(
            cli::parse(cli::run_spec(), static_cast<int>(argv.size()), argv.data()));
    }
    } // namespace

    TEST_CASE("ch-run: -m and --mount set the SquashFS mount point") {
        CHECK_FALSE(parse_run({"img.sqfs", "--", "true"}).mount.has_value());
        CHECK(parse_run({"-m", "/mnt/x", "img.sqfs", "--", "true"}).mount == "/mnt/x");
        CHECK(parse_run({"--mount", "/mnt/y", "img.sqfs", "--", "true"}).mount == "/mnt/y");
        CHECK(parse_run({"--mount=/mnt/z", "img.sqfs", "--", "true"}).mount == "/mnt/z");
        const auto o = parse_run({"-m", "/mnt/x", "img.sqfs", "--", "ls", "-m", "/"});
        CHECK(o.mount == "/mnt/x");
        CHECK(o.image_ref == "img.sqfs");
        CHECK(o.command ==
              std::vector<std::string>{"ls", "-m", "/"}); // the command's -m is its own
    }

    TEST_CASE("ch-run: -m needs a value; given twice, the last one counts (as with argp)") {
        CHECK_THROWS_AS(parse_run({"img.sqfs", "-m"}), UsageError);
        CHECK(parse_run({"-m", "/a", "-m", "/b", "img.sqfs", "--", "true"}).mount == "/b");
    }

    TEST_CASE("ch-run: -W takes a size; zero is refused (tmpfs would take it as no limit)") {
        CHECK(parse_run({"-W", "img", "--", "true"}).write_fake == "12%");
        CHECK(parse_run({"-W4G", "img", "--", "true"}).write_fake == "4G");
        CHECK(parse_run({"--write-fake=10%", "img", "--", "true"}).write_fake == "10%");
        CHECK(parse_run({"-W100", "img", "--", "true"}).write_fake == "100");
        for (const char* zero : {"-W0", "-W0%", "-W00", "--write-fake=0k", "--write-fake=0G"})
            CHECK_THROWS_WITH_AS(parse_run({zero, "img", "--", "true"}),
                                 doctest::Contains("must be more than zero"), UsageError);
        CHECK_THROWS_WITH_AS(parse_run({"-W1G,uid=0", "img", "--", "true"}),
                             doctest::Contains("bad --write-fake size"), UsageError);
        CHECK_THROWS_AS(parse_run({"-W%", "img", "--", "true"}), UsageError);
    }

} // TEST_SUITE
