// publish_test.cc: staging, publishing and the sweep of staging debris,
// including a second user racing directory/symlink swaps against the sweep
// (made deterministic with the sweep's hook).
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "storage/publish.hh"
#include "util/error.hh"
#include "util/fd.hh"

using namespace ch;
using namespace ch::storage;
using ch::test::TempDir;

namespace {

mode_t mode_of(const fs::path& p) {
    struct stat st {};

    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Debris of a killed conversion: a staging directory nobody holds, with a
// read-only directory inside (so removing it needs a mode change).
fs::path plant_debris(const fs::path& dir, const std::string& name = "out") {
    const fs::path d = dir / staging_name(name, 999999, 7);
    fs::create_directories(d / "ro" / "sub");
    std::ofstream(d / "ro" / "sub" / "f") << "x";
    fs::permissions(d / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    return d;
}

} // namespace

TEST_SUITE("storage/publish") {

    TEST_CASE("staging: names are hidden, recognisable, and per process") {
        CHECK(staging_name("img", 42, 3) == ".img.ch-staging.42.3");
        CHECK(is_staging_name(".img.ch-staging.42.3"));
        CHECK_FALSE(is_staging_name("img.ch-staging.42.3"));
        CHECK_FALSE(is_staging_name(".img"));
        CHECK_FALSE(is_staging_name("."));
    }

    TEST_CASE("staging: a directory is staged beside dest, locked, and removed unless published") {
        TempDir tmp;
        const fs::path dest = tmp / "out";
        fs::path staged;
        {
            Staged s(dest, StagedKind::dir);
            staged = s.path();
            CHECK(staged.parent_path() == tmp.path());
            CHECK(is_staging_name(staged.filename().string()));
            CHECK(mode_of(staged) == 0700);
            // Held: a sweep leaves it alone.
            sweep_staging(tmp.path());
            CHECK(fs::is_directory(staged));
            const Fd fd = open_at(AT_FDCWD, staged, O_RDONLY | O_DIRECTORY);
            CHECK(::flock(fd.get(), LOCK_EX | LOCK_NB) != 0);
            std::ofstream(staged / "f") << "x";
        }
        CHECK_FALSE(fs::exists(staged));
        CHECK(names_in(tmp.path()).empty());
    }

    TEST_CASE("publish: a directory appears whole, 0755, replacing the old one") {
        TempDir tmp;
        const fs::path dest = tmp / "out";
        fs::create_directories(dest / "old");
        {
            Staged s(dest, StagedKind::dir);
            std::ofstream(s.path() / "new") << "x";
            s.publish();
        }
        CHECK(names_in(dest) == std::vector<std::string>{"new"});
        CHECK(mode_of(dest) == 0755);
        CHECK(names_in(tmp.path()) == std::vector<std::string>{"out"}); // the old tree is gone too
    }

    TEST_CASE("publish: a file is renamed into place") {
        TempDir tmp;
        const fs::path dest = tmp / "out.tar";
        {
            Staged s(dest, StagedKind::file);
            const Fd fd = open_at(AT_FDCWD, s.path(), O_WRONLY);
            write_all(fd.get(), "data", "test file");
            s.publish();
        }
        CHECK(test::slurp(dest) == "data");
        CHECK(names_in(tmp.path()) == std::vector<std::string>{"out.tar"});
    }

    TEST_CASE("sweep: removes unheld debris, even read-only, and nothing else") {
        TempDir tmp;
        plant_debris(tmp.path());
        test::spit(tmp / staging_name("file", 999999, 1), "partial");
        fs::create_directories(tmp / "keep");
        test::spit(tmp / ".hidden", "x");
        sweep_staging(tmp.path());
        CHECK(names_in(tmp.path()) == std::vector<std::string>{".hidden", "keep"});
    }

    TEST_CASE("sweep: a symlink named like staging is neither followed nor removed") {
        TempDir tmp;
        fs::create_directories(tmp / "victim");
        fs::permissions(tmp / "victim", fs::perms::owner_read | fs::perms::owner_exec);
        test::spit(tmp / "victim" / "../victim-file", "x");
        const fs::path link = tmp / staging_name("out", 999999, 1);
        fs::create_directory_symlink(tmp / "victim", link);
        sweep_staging(tmp.path());
        CHECK(fs::is_symlink(link));
        CHECK(mode_of(tmp / "victim") == 0500);
        fs::permissions(tmp / "victim", fs::perms::owner_all);
    }

    // The race a second user could run in a directory both can write: swap
    // something the sweep is about to change for a symlink to one of our files.
    // With the hook, the swap happens exactly between the sweep's steps.
    TEST_CASE("sweep: a directory swapped for a symlink mid-sweep changes no mode") {
        TempDir tmp;
        const fs::path victim = tmp / "victim";
        test::spit(victim, "mine");
        fs::permissions(victim, fs::perms::owner_read | fs::perms::owner_write);
        const fs::path victim_dir = tmp / "victim-dir";
        fs::create_directories(victim_dir);
        test::spit(victim_dir / "keep", "mine");
        fs::permissions(victim_dir, fs::perms::owner_read | fs::perms::owner_exec);
        const fs::path debris = plant_debris(tmp.path());

        SUBCASE("inside the staging tree, before a read-only directory is opened") {
            bool swapped = false;
            sweep_staging(tmp.path(), [&](std::string_view step, const std::string& name) {
                if (step != "open-dir" || name != "ro" || swapped)
                    return;
                fs::rename(debris / "ro", tmp / "moved-away");
                fs::create_symlink(victim, debris / "ro");
                swapped = true;
            });
            CHECK(swapped);
            fs::permissions(tmp / "moved-away", fs::perms::owner_all);
        }
        SUBCASE("the staging directory itself, before it is opened") {
            bool swapped = false;
            sweep_staging(tmp.path(), [&](std::string_view step, const std::string&) {
                if (step != "open" || swapped)
                    return;
                fs::rename(debris, tmp / "moved-away");
                fs::create_directory_symlink(victim_dir, debris);
                swapped = true;
            });
            CHECK(swapped);
            CHECK(fs::is_symlink(debris)); // skipped, not followed
            fs::permissions(tmp / "moved-away" / "ro", fs::perms::owner_all);
        }
        SUBCASE("the staging directory itself, after it was opened and checked") {
            bool swapped = false;
            sweep_staging(tmp.path(), [&](std::string_view step, const std::string&) {
                if (step != "remove" || swapped)
                    return;
                fs::rename(debris, tmp / "moved-away");
                fs::create_directory_symlink(victim_dir, debris);
                swapped = true;
            });
            CHECK(swapped);
            // What was opened is what got emptied; the name swapped in is not
            // removed through (rmdir of a symlink fails) and not followed.
            CHECK(fs::is_symlink(debris));
            CHECK(fs::is_empty(tmp / "moved-away"));
        }
        CHECK(mode_of(victim) == 0600);
        CHECK(test::slurp(victim) == "mine");
        CHECK(mode_of(victim_dir) == 0500);
        CHECK(test::slurp(victim_dir / "keep") == "mine");
        fs::permissions(victim_dir, fs::perms::owner_all);
    }

    TEST_CASE("sweep: another user's staging directory is skipped, its mode untouched" *
              doctest::skip(::geteuid() != 0)) {
        // As root, fchmod would succeed on anyone's directory: only the owner
        // check keeps the sweep off it.
        TempDir tmp;
        const fs::path foreign = plant_debris(tmp.path());
        for (const auto& p :
             {foreign, foreign / "ro", foreign / "ro" / "sub", foreign / "ro" / "sub" / "f"})
            REQUIRE(::lchown(p.c_str(), 65534, 65534) == 0);
        fs::permissions(foreign, fs::perms::owner_read | fs::perms::owner_exec);
        sweep_staging(tmp.path());
        CHECK(fs::exists(foreign / "ro" / "sub" / "f"));
        CHECK(mode_of(foreign) == 0500);
        CHECK(mode_of(foreign / "ro") == 0500);
        fs::permissions(foreign, fs::perms::owner_all);
        fs::permissions(foreign / "ro", fs::perms::owner_all);
    }

} // TEST_SUITE
