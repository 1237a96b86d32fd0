// exec_test.cc: the image's /ch/environment is read only if it is a regular
// file of bounded size (run/exec.cc read_image_file).
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "run/exec.hh"
#include "test/unit/image/fixtures.hh"
#include "util/error.hh"

using namespace ch;
namespace fs = std::filesystem;

TEST_SUITE("run/exec") {
    TEST_CASE("exec: /ch/environment must be a regular file within the limit") {
        const test::TempDir t;
        const fs::path env = t.path() / "environment";
        std::ofstream(env) << "A=1\nB=2\n";
        CHECK(run::read_image_file(env, 8) == "A=1\nB=2\n");
        const std::string too_big =
            cat("can't read ", env.string(), ": 8 bytes, more than the 7 allowed");
        CHECK_THROWS_WITH_AS(run::read_image_file(env, 7), doctest::Contains(too_big.c_str()),
                             Error);
        // A symlink to a regular file is fine; to /dev/zero it is refused
        // before a byte is read.
        fs::create_symlink(env, t.path() / "link");
        CHECK(run::read_image_file(t.path() / "link", 100) == "A=1\nB=2\n");
        fs::create_symlink("/dev/zero", t.path() / "zero");
        CHECK_THROWS_WITH_AS(run::read_image_file(t.path() / "zero", run::image_env_max_bytes),
                             doctest::Contains("not a regular file"), Error);
        // A FIFO with no writer: refused at once, not waited on.
        REQUIRE(::mkfifo((t.path() / "fifo").c_str(), 0600) == 0);
        const auto start = std::chrono::steady_clock::now();
        CHECK_THROWS_WITH_AS(run::read_image_file(t.path() / "fifo", run::image_env_max_bytes),
                             doctest::Contains("not a regular file"), Error);
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
        CHECK_THROWS_WITH_AS(run::read_image_file(t.path(), run::image_env_max_bytes),
                             doctest::Contains("not a regular file"), Error);
        CHECK_THROWS_AS(run::read_image_file(t.path() / "missing", 10), SysError);
        CHECK(run::image_env_max_bytes == 1048576);
    }
}
