// config_test.cc: the configuration files: precedence, merging, origins,
// and errors that point at a line.
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "util/config.hh"
#include "util/error.hh"

namespace {

using ch::config::Config;

std::string write(const ch::test::TempDir& d, const std::string& name, const std::string& text) {
    const std::string path = d / name;
    std::ofstream(path) << text;
    return path;
}

std::string error_of(const std::string& site, const std::string& user) {
    try {
        Config::load_files(site, user);
    } catch (const ch::Error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_SUITE("util/config") {
    TEST_CASE("config: the user's scalar wins over the site's; origins name the line") {
        ch::test::TempDir d;
        const std::string site = write(d, "site.yaml",
                                       "storage: /site/store\n"
                                       "registry:\n"
                                       "  parallel: 4\n"
                                       "  tls-verify: false\n");
        const std::string user = write(d, "user.yaml", "# mine\nstorage: /mine\n");
        const Config c = Config::load_files(site, user);
        const auto s = c.string("storage");
        REQUIRE(s);
        CHECK(s->value == "/mine");
        CHECK(s->origin.str() == user + ":2:10");
        const auto p = c.integer("registry.parallel", 1, 64);
        REQUIRE(p);
        CHECK(p->value == 4);
        CHECK(p->origin.str() == site + ":3:13");
        const auto v = c.boolean("registry.tls-verify");
        REQUIRE(v);
        CHECK(v->value == false);
        CHECK_FALSE(c.string("registry.ca-file"));
        CHECK(c.files() == std::vector<std::string>{site, user});
    }

    TEST_CASE("config: lists add up, site's first; maps merge with the user's entry winning") {
        ch::test::TempDir d;
        const std::string site = write(d, "site.yaml",
                                       "run:\n"
                                       "  binds: [/lustre, {source: /scratch, optional: true}]\n"
                                       "  env:\n"
                                       "    set: {A: site, B: site}\n");
        const std::string user = write(d, "user.yaml",
                                       "run:\n"
                                       "  binds:\n"
                                       "    - /home/me/data:/data\n"
                                       "  env:\n"
                                       "    set: {B: user}\n");
        const Config c = Config::load_files(site, user);
        const auto binds = c.list("run.binds");
        REQUIRE(binds.size() == 3);
        CHECK(binds[0].node.Scalar() == "/lustre");
        CHECK(binds[1].node["source"].Scalar() == "/scratch");
        CHECK(binds[2].node.Scalar() == "/home/me/data:/data");
        CHECK(binds[2].origin.str() == user + ":3:7");
        const auto set = c.map("run.env.set");
        REQUIRE(set.size() == 2);
        CHECK(set.at("A").node.Scalar() == "site");
        CHECK(set.at("B").node.Scalar() == "user");
        CHECK(set.at("B").origin.file == user);
    }

    TEST_CASE("config: missing files are fine; an empty file is no settings") {
        ch::test::TempDir d;
        const std::string empty = write(d, "empty.yaml", "");
        const Config c = Config::load_files(d / "absent.yaml", empty);
        CHECK_FALSE(c.string("storage"));
        CHECK(c.list("run.binds").empty());
        CHECK(c.files() == std::vector<std::string>{empty});
        CHECK(Config::load_files("", "").files().empty());
    }

    TEST_CASE("config: malformed files and wrong types are errors at FILE:LINE:COL") {
        ch::test::TempDir d;
        const std::string bad = write(d, "bad.yaml", "run:\n  binds: [/a, /b\n");
        CHECK(error_of(bad, "").starts_with("can't read config " + bad + ":"));
        const std::string type = write(d, "type.yaml", "registry:\n  parallel: many\n");
        CHECK(error_of("", type) ==
              "can't read config " + type + ":2:13: registry.parallel must be an integer");
        const std::string list = write(d, "list.yaml", "run:\n  binds: /lustre\n");
        CHECK(error_of("", list) ==
              "can't read config " + list + ":2:10: run.binds must be a list");
        const std::string top = write(d, "top.yaml", "- a\n- b\n");
        CHECK(error_of(top, "") ==
              "can't read config " + top + ":1:1: the file must be a mapping of settings");
        const Config c =
            Config::load_files(write(d, "range.yaml", "run:\n  join-timeout: 0\n"), "");
        CHECK_THROWS_WITH_AS(c.integer("run.join-timeout", 1, 3600),
                             doctest::Contains("must be an integer from 1 to 3600"), ch::Error);
        CHECK(error_of(d.path(), "").find("not a regular file") != std::string::npos);
    }

    TEST_CASE("config: unknown keys are ignored (with a warning), known ones still read") {
        ch::test::TempDir d;
        const std::string f =
            write(d, "f.yaml", "storag: /typo\nstorage: /ok\nrun: {bindz: [x]}\n");
        const Config c = Config::load_files(f, "");
        CHECK(c.string("storage")->value == "/ok");
        CHECK(c.list("run.binds").empty());
    }

    TEST_CASE("config: lookups never change the tree") {
        ch::test::TempDir d;
        const Config c = Config::load_files(write(d, "f.yaml", "run:\n  env: {pass: [X]}\n"), "");
        CHECK_FALSE(c.string("storage"));
        CHECK(c.map("run.env.set").empty());
        CHECK(c.list("run.env.pass").size() == 1);
        CHECK(c.list("run.env.pass").size() == 1);
    }

    TEST_CASE("config: expand_path expands ~, $USER and $HOME only") {
        setenv("HOME", "/home/u", 1);
        setenv("USER", "u", 1);
        CHECK(ch::config::expand_path("~") == "/home/u");
        CHECK(ch::config::expand_path("~/x") == "/home/u/x");
        CHECK(ch::config::expand_path("/local/$USER.ch") == "/local/u.ch");
        CHECK(ch::config::expand_path("/local/${USER}x") == "/local/ux");
        CHECK(ch::config::expand_path("$HOME/$USERS/$OTHER") == "/home/u/$USERS/$OTHER");
        CHECK(ch::config::expand_path("a~b$") == "a~b$");
    }
}
