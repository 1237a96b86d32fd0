// lock_test.cc: the storage lock serialises writers, across processes, and
// is released when its holder dies, even by SIGKILL.
#include <csignal>

#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "storage/lock.hh"

using namespace ch;
using namespace ch::storage;

TEST_SUITE("storage/lock") {

    TEST_CASE("lock: exclusive conflicts with another holder, shared with shared does not") {
        test::TempDir tmp;
        {
            StorageLock a(tmp.path(), LockMode::exclusive);
            CHECK(StorageLock::held_by_other(tmp.path(), LockMode::shared));
            CHECK(StorageLock::held_by_other(tmp.path(), LockMode::exclusive));
        }
        CHECK(!StorageLock::held_by_other(tmp.path(), LockMode::exclusive));
        {
            StorageLock a(tmp.path(), LockMode::shared);
            CHECK(!StorageLock::held_by_other(tmp.path(), LockMode::shared));
            CHECK(StorageLock::held_by_other(tmp.path(), LockMode::exclusive));
        }

        struct stat st {};

        REQUIRE(::stat((tmp / "lock").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
    }

    TEST_CASE("lock: a second writer waits until the first one is gone, even killed") {
        test::TempDir tmp;
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            try {
                StorageLock held(tmp.path(), LockMode::exclusive);
                (void)!::write(ready[1], "x", 1);
                ::pause();
            } catch (...) {
            }
            ::_exit(1);
        }
        char c = 0;
        REQUIRE(::read(ready[0], &c, 1) == 1);
        CHECK(StorageLock::held_by_other(tmp.path(), LockMode::exclusive));
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        StorageLock mine(tmp.path(), LockMode::exclusive); // would hang if the lock had leaked
        CHECK(WIFSIGNALED(status));
        ::close(ready[0]);
        ::close(ready[1]);
    }

    TEST_CASE("lock: a symlink planted as the lock file is refused") {
        test::TempDir tmp;
        fs::create_symlink("/etc/passwd", tmp / "lock");
        CHECK_THROWS_AS(StorageLock(tmp.path(), LockMode::exclusive), Error);
    }
}
