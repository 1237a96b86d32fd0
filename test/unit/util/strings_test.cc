// strings_test.cc: cat() and printable().
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "util/error.hh"
#include "util/strings.hh"
#include "util/tree.hh"

TEST_SUITE("util/strings") {
    TEST_CASE("strings: cat prints paths without quotes") {
        CHECK(ch::cat("a", 1, std::filesystem::path("/x y"), '!') == "a1/x y!");
    }

    TEST_CASE("strings: printable escapes control characters and invalid UTF-8") {
        CHECK(ch::printable("plain/path") == "plain/path");
        CHECK(ch::printable("a\nb\tc") == "a\\nb\\tc");
        CHECK(ch::printable("\x1b[31mred") == "\\x1b[31mred");
        CHECK(ch::printable("back\\slash") == "back\\\\slash");
        CHECK(ch::printable("caf\xc3\xa9") == "caf\xc3\xa9");
        CHECK(ch::printable("bad\xff") == "bad\\xff");
        CHECK(ch::printable("c1\xc2\x9b") == "c1\\xc2\\x9b"); // CSI as a C1 control
        CHECK(ch::printable(std::string("nul\0x", 5)) == "nul\\x00x");
    }

    TEST_CASE("strings: quote_name keeps short names whole and shortens long ones") {
        CHECK(ch::quote_name("etc/hosts") == "'etc/hosts'");
        CHECK(ch::quote_name("a\nb") == "'a\\nb'");
        std::string deep;
        for (int i = 0; i < 20000; i++)
            deep += "a/";
        deep += "f";
        const std::string q = ch::quote_name(deep);
        CHECK(q.size() < 200);
        CHECK(q ==
              "'" + deep.substr(0, 80) + "..." + deep.substr(deep.size() - 80) + "' (40001 bytes)");
        CHECK(ch::quote_name(std::string(160, 'x')) == "'" + std::string(160, 'x') + "'");
        CHECK(ch::quote_name(std::string(161, 'x'), 4) == "'xx...xx' (161 bytes)");
        // A two-byte character across either cut is dropped whole, never split.
        const std::string e = "\xc3\xa9";
        CHECK(ch::quote_name("a" + e + std::string(10, 'm') + e + "z", 4) == "'a...z' (16 bytes)");
        // Control characters in the kept parts stay escaped.
        CHECK(ch::quote_name("\x1b" + std::string(300, 'y') + "\n", 6) ==
              "'\\x1byy...yy\\n' (302 bytes)");
    }

    TEST_CASE("strings: parse_uint is strict") {
        unsigned long long v = 0;
        CHECK(ch::parse_uint("0", 10, v));
        CHECK(v == 0);
        CHECK(ch::parse_uint("4294967294", 4294967294ULL, v));
        CHECK_FALSE(ch::parse_uint("4294967295", 4294967294ULL, v));
        CHECK_FALSE(ch::parse_uint("-1", 100, v));
        CHECK_FALSE(ch::parse_uint("12abc", 100, v));
        CHECK_FALSE(ch::parse_uint(" 1", 100, v));
        CHECK_FALSE(ch::parse_uint("", 100, v));
    }

    TEST_CASE("error: context and errno") {
        ch::Error e("inner");
        e.add_context("outer");
        CHECK(std::string(e.what()) == "outer: inner");
        errno = ENOENT;
        CHECK_THROWS_WITH_AS(ch::throw_errno("can't open ", std::filesystem::path("/x")),
                             "can't open /x: No such file or directory", ch::SysError);
    }

    TEST_CASE("tree: remove_tree removes read-only directories and never follows symlinks") {
        namespace fs = std::filesystem;
        char tmpl[] = "/tmp/ch-tree-test.XXXXXX";
        const fs::path base = ::mkdtemp(tmpl);
        fs::create_directories(base / "t/ro/sub");
        fs::create_directories(base / "keep");
        std::ofstream(base / "keep/file") << "x";
        fs::create_symlink(base / "keep", base / "t/ro/link");
        fs::permissions(base / "t/ro", fs::perms::owner_read | fs::perms::owner_exec);
        ch::remove_tree(base / "t");
        CHECK_FALSE(fs::exists(base / "t"));
        CHECK(fs::exists(base / "keep/file"));
        ch::remove_tree(base / "t"); // missing: fine
        ch::remove_tree(base);
        CHECK_FALSE(fs::exists(base));
    }
}
