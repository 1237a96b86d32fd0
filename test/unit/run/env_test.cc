// env_test.cc: the container environment, in Charliecloud's exact order.
#include <doctest/doctest.h>

#include "run/env.hh"
#include "util/error.hh"

using namespace ch::run;

namespace {
std::string get(const EnvVars& env, const std::string& k) {
    for (const auto& [name, v] : env)
        if (name == k)
            return v;
    return "<unset>";
}

EnvDelta set(std::vector<std::pair<std::string, std::string>> vars) {
    EnvDelta d;
    d.vars = std::move(vars);
    return d;
}

EnvDelta unset(std::string glob) {
    EnvDelta d;
    d.kind = EnvDelta::Kind::unset;
    d.glob = std::move(glob);
    return d;
}
} // namespace

TEST_SUITE("run/env") {
    TEST_CASE("env: PATH gets /bin appended unless it looks present (substring rule)") {
        CHECK(fix_path("/usr/local/bin:/usr/bin") == "/usr/local/bin:/usr/bin:/bin");
        CHECK(fix_path("/bin") == "/bin");
        CHECK(fix_path("/bin2:/usr/bin") == "/bin2:/usr/bin");
        CHECK(fix_path("/usr/bin:/binutils") == "/usr/bin:/binutils");
        CHECK(fix_path("/usr/bin:/bin:/sbin") == "/usr/bin:/bin:/sbin");
    }

    TEST_CASE("env: HOME set, TMPDIR unset, CH_RUNNING last, the rest passes through") {
        EnvInputs in;
        in.home = "/root";
        const auto env =
            build_environment({"PATH=/usr/bin", "TMPDIR=/scratch", "PWD=/x", "HOME=/h"}, in);
        CHECK(get(env, "HOME") == "/root");
        CHECK(get(env, "TMPDIR") == "<unset>");
        CHECK(get(env, "PWD") == "/x");
        CHECK(get(env, "PATH") == "/usr/bin:/bin");
        CHECK(env.back().first == "CH_RUNNING");
        CHECK(env.back().second == "Weird Al Yankovic");
    }

    TEST_CASE("env: --set-env and --unset-env apply in command-line order") {
        EnvInputs in;
        in.home = "/";
        in.deltas = {set({{"A", "1"}, {"B", "2"}}), unset("A"), set({{"A", "3"}}), unset("B*")};
        const auto env = build_environment({}, in);
        CHECK(get(env, "A") == "3");
        CHECK(get(env, "B") == "<unset>");
    }

    TEST_CASE("env: --unset-env='*' can't remove CH_RUNNING") {
        EnvInputs in;
        in.deltas = {unset("*")};
        const auto env = build_environment({"PATH=/bin", "X=1"}, in);
        REQUIRE(env.size() == 1);
        CHECK(env[0].first == "CH_RUNNING");
    }

    TEST_CASE("env: extended globs work in --unset-env") {
        EnvInputs in;
        in.deltas = {unset("@(FOO|BAR)")};
        const auto env = build_environment({"FOO=1", "BAR=2", "BAZ=3"}, in);
        CHECK(get(env, "FOO") == "<unset>");
        CHECK(get(env, "BAR") == "<unset>");
        CHECK(get(env, "BAZ") == "3");
    }

    TEST_CASE("env: whole $NAME items expand; unset or empty ones vanish with their colon") {
        const EnvVars env = {{"A", "/a"}, {"E", ""}};
        CHECK(expand_value("$A:/x", env) == "/a:/x");
        CHECK(expand_value("/x:$NOPE:/y", env) == "/x:/y");
        CHECK(expand_value("$E:/y", env) == "/y");
        CHECK(expand_value("x$A", env) == "x$A");
        CHECK(expand_value("$", env) == "$");
    }

    TEST_CASE("env: expansion sees earlier deltas; --env-no-expand keeps values literal") {
        EnvInputs in;
        in.deltas = {set({{"P", "/p"}}), set({{"PATH", "$P:$PATH"}})};
        auto env = build_environment({"PATH=/usr/bin"}, in);
        CHECK(get(env, "PATH") == "/p:/usr/bin:/bin");
        in.no_expand = true;
        env = build_environment({"PATH=/usr/bin"}, in);
        CHECK(get(env, "PATH") == "$P:$PATH");
    }

    TEST_CASE("env: parsing KEY=VALUE text") {
        const auto vars = parse_env_text("A=1\n\nB='quoted'\nC=\"dq\"\nD=x=y\nE='\n", '\n', "f");
        REQUIRE(vars.size() == 5);
        CHECK(vars[1].second == "quoted");
        CHECK(vars[2].second == "\"dq\"");
        CHECK(vars[3].second == "x=y");
        CHECK(vars[4].second == "'");
        const auto z = parse_env_text(std::string("A=1\0B=2\nstill B\0", 17), '\0', "f");
        REQUIRE(z.size() == 2);
        CHECK(z[1].second == "2\nstill B");
    }

    TEST_CASE("env: malformed lines name the file and line") {
        CHECK_THROWS_WITH_AS(parse_env_text("A=1\nnoequals\n", '\n', "/x/env"),
                             doctest::Contains("can't parse /x/env line 2: no '=' in noequals"),
                             ch::Error);
        CHECK_THROWS_WITH_AS(parse_env_assignment("=v", "--set-env"),
                             doctest::Contains("empty name"), ch::Error);
    }
}
