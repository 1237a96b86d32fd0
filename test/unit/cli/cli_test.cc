// cli_test.cc: the option layer: the one parser every tool uses, and the
// Argh pitfalls it must not have (STYLE.md §7, bin/cli.hh).
#include <doctest/doctest.h>

#include "cli.hh"
#include "util/error.hh"

using ch::cli::Arg;

namespace {

const ch::cli::Spec spec = {
    "tool",
    "[OPTION...] IMAGE -- COMMAND",
    "test",
    {
        {"bind", 'b', Arg::required, true, "SRC", "bind"},
        {"cd", 'c', Arg::required, false, "DIR", "cd"},
        {"home", 0, Arg::none, false, "", "home"},
        {"set-env", 0, Arg::optional, true, "ARG", "set"},
        {"unset-env", 0, Arg::required, true, "GLOB", "unset"},
        {"verbose", 'v', Arg::none, true, "", "verbose"},
        {"write-fake", 'W', Arg::optional, false, "SIZE", "wf"},
        {"quiet", 'q', Arg::none, true, "", "quiet"},
    },
    true,
};

ch::cli::Parsed parse(std::initializer_list<const char*> args) {
    const char* argv[64] = {"tool"};
    int argc = 1;
    for (const char* a : args)
        argv[argc++] = a;
    return ch::cli::parse(spec, argc, argv);
}

} // namespace

TEST_SUITE("cli") {
    TEST_CASE("cli: a repeated option keeps every value, in order") {
        const auto p =
            parse({"-b", "/a", "--bind", "/b", "--bind=/c:/d", "-b/e", "img", "--", "true"});
        REQUIRE(p.values.at("bind").size() == 4);
        CHECK(p.values.at("bind")[0] == "/a");
        CHECK(p.values.at("bind")[1] == "/b");
        CHECK(p.values.at("bind")[2] == "/c:/d");
        CHECK(p.values.at("bind")[3] == "/e");
    }

    TEST_CASE("cli: -- ends option parsing; the command keeps its own options") {
        const auto p = parse({"-v", "img", "--", "ls", "-l", "--color", "-b"});
        CHECK(p.positional == std::vector<std::string>{"img"});
        CHECK(p.command == std::vector<std::string>{"ls", "-l", "--color", "-b"});
        CHECK(p.count("verbose") == 1);
        CHECK_FALSE(p.has("bind"));
    }

    TEST_CASE("cli: a value that starts with - is kept") {
        const auto p = parse({"--unset-env", "-FOO", "-c", "-dir", "img", "--", "x"});
        CHECK(p.values.at("unset-env") == std::vector<std::string>{"-FOO"});
        CHECK(p.value("cd") == "-dir");
    }

    TEST_CASE("cli: an empty argument is a usage error, not an abort") {
        CHECK_THROWS_WITH_AS(parse({"img", "", "--", "x"}),
                             doctest::Contains("argument 2 is empty"), ch::UsageError);
        CHECK_THROWS_WITH_AS(parse({"--cd", "", "img"}), doctest::Contains("non-empty"),
                             ch::UsageError);
        CHECK_THROWS_WITH_AS(parse({"--cd=", "img"}), doctest::Contains("non-empty"),
                             ch::UsageError);
    }

    TEST_CASE("cli: unknown options are usage errors") {
        CHECK_THROWS_WITH_AS(parse({"--frobnicate", "img"}),
                             doctest::Contains("unrecognized option '--frobnicate'"),
                             ch::UsageError);
        CHECK_THROWS_WITH_AS(parse({"-x", "img"}), doctest::Contains("invalid option -- 'x'"),
                             ch::UsageError);
        CHECK_THROWS_AS(parse({"--home=yes", "img"}), ch::UsageError);
        CHECK_THROWS_WITH_AS(parse({"img", "--cd"}), doctest::Contains("requires an argument"),
                             ch::UsageError);
    }

    TEST_CASE("cli: bundled flags count, and optional arguments must be attached") {
        const auto p = parse({"-vvv", "-W", "img", "--", "x"});
        CHECK(p.count("verbose") == 3);
        CHECK(p.has("write-fake"));
        CHECK_FALSE(p.value("write-fake").has_value());
        CHECK(p.positional == std::vector<std::string>{"img"});
        const auto q = parse({"-W4G", "--set-env", "--set-env=A=1", "img"});
        CHECK(q.value("write-fake") == "4G");
        CHECK(q.count("set-env") == 2);
        CHECK(q.values.at("set-env") == std::vector<std::string>{"A=1"});
    }

    TEST_CASE("cli: a single-valued option given twice keeps the last value") {
        const auto p = parse({"-c", "/a", "-c", "/b", "img"});
        CHECK(p.value("cd") == "/b");
    }

    TEST_CASE("cli: options keep their command-line order across kinds") {
        const auto p = parse({"--set-env=A=1", "--unset-env", "A", "--set-env=B=2", "img"});
        REQUIRE(p.in_order.size() == 3);
        CHECK(p.in_order[0].name == "set-env");
        CHECK(p.in_order[1].name == "unset-env");
        CHECK(p.in_order[2].value == "B=2");
    }

    TEST_CASE("cli: positionals before -- and after it both count") {
        const auto p = parse({"img", "echo", "-q", "--", "hi"});
        // -q before -- is ours, as argp would take it
        CHECK(p.count("quiet") == 1);
        CHECK(p.positional == std::vector<std::string>{"img", "echo"});
        CHECK(p.command == std::vector<std::string>{"hi"});
    }

    TEST_CASE("cli: a lone - is a positional, before and after --") {
        const auto p = parse({"-", "-v", "img", "--", "-"});
        CHECK(p.positional == std::vector<std::string>{"-", "img"});
        CHECK(p.command == std::vector<std::string>{"-"});
        CHECK(p.count("verbose") == 1);
        const auto q = parse({"-c", "-", "img"});
        CHECK(q.value("cd") == "-");
    }

    TEST_CASE("cli: every option and value comes out as the table says, in one pass") {
        const auto p = parse({"-b", "/a", "--bind", "/b", "-vv", "--set-env=X=1", "--unset-env",
                              "-FOO", "-W", "--home", "img", "cmd", "-q", "--", "ls", "-l"});
        CHECK(p.values.at("bind") == std::vector<std::string>{"/a", "/b"});
        CHECK(p.count("verbose") == 2);
        CHECK(p.values.at("set-env") == std::vector<std::string>{"X=1"});
        CHECK(p.values.at("unset-env") == std::vector<std::string>{"-FOO"});
        CHECK(p.has("write-fake"));
        CHECK_FALSE(p.value("write-fake").has_value());
        CHECK(p.has("home"));
        CHECK(p.count("quiet") == 1);
        CHECK(p.positional == std::vector<std::string>{"img", "cmd"});
        CHECK(p.command == std::vector<std::string>{"ls", "-l"});
        CHECK(p.saw_dashdash);
        CHECK(p.in_order.size() == 9); // -vv counts twice
    }

    TEST_CASE("cli: --help lists every visible option") {
        const std::string h = ch::cli::help_text(spec);
        for (const auto& o : spec.options)
            CHECK(h.find("--" + o.long_name) != std::string::npos);
        CHECK(h.find("-b, --bind SRC") != std::string::npos);
        CHECK(h.find("--set-env[=ARG]") != std::string::npos);
    }
}
