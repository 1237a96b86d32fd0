// join_test.cc: --join's peer count, tag and object name, and the rendezvous
// itself with real forked peers on a private directory standing in for
// /dev/shm (the holder and the futex are real; only setns is left out, the
// bats suite does that).
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "../image/fixtures.hh"
#include "run/join.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::run;
using namespace std::chrono_literals;

namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
    auto held = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
    return [held](const char* name) -> const char* {
        const auto it = held->find(name);
        return it == held->end() ? nullptr : it->second.c_str();
    };
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    return out;
}

// Wait until the directory is empty (the holder may take a moment to go).
bool becomes_empty(const fs::path& dir, std::chrono::milliseconds max) {
    const auto end = std::chrono::steady_clock::now() + max;
    while (!entries(dir).empty()) {
        if (std::chrono::steady_clock::now() > end)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// One peer as ch-run does it, in a child; exit 0 on success, 1 with the
// message on stderr otherwise. first_exits: the first peer leaves at once.
pid_t peer(const JoinSpec& spec, const fs::path& dir, std::chrono::milliseconds delay = 0ms) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid != 0)
        return pid;
    int code = 0;
    try {
        std::this_thread::sleep_for(delay);
        JoinGroup g = JoinGroup::arrive(spec, dir);
        if (g.first()) {
            g.publish_ready();
        } else {
            const JoinNamespaces ns = g.wait_for_container();
            if (!ns.user || !ns.mnt)
                code = 2;
            g.joined();
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "peer: %s\n", e.what());
        code = 1;
    }
    ::_exit(code);
}

int wait_status(pid_t pid) {
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

} // namespace

TEST_SUITE("run/join") {
    TEST_CASE("join: this node's tasks from SLURM_STEP_TASKS_PER_NODE and SLURM_NODEID") {
        CHECK(tasks_on_node("4(x2),2", 0u) == 4);
        CHECK(tasks_on_node("4(x2),2", 1u) == 4);
        CHECK(tasks_on_node("4(x2),2", 2u) == 2);
        CHECK(tasks_on_node("3,1", 1u) == 1);
        CHECK(tasks_on_node("16", std::nullopt) == 16);
        CHECK(tasks_on_node("2(x3)", std::nullopt) == 2);
        CHECK(error_of([] {
                  tasks_on_node("4(x2),2", 3u);
              }).find("SLURM_NODEID=3 but SLURM_STEP_TASKS_PER_NODE=4(x2),2 lists 3 nodes") !=
              std::string::npos);
        CHECK(error_of([] { tasks_on_node("4,2", std::nullopt); }).find("SLURM_NODEID not set") !=
              std::string::npos);
        for (const char* bad : {"", "x", "4(x", "4(x0)", "4(2)", "0", "4,,2", "-1", "4(x2)junk"})
            CHECK_MESSAGE(error_of([&] { tasks_on_node(bad, 0u); }).find("can't read") !=
                              std::string::npos,
                          bad);
    }

    TEST_CASE("join: the default count prefers Open MPI's local size, then Slurm's") {
        CHECK(default_join_count(env_of(
                  {{"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}, {"SLURM_STEP_TASKS_PER_NODE", "1"}})) == 3);
        CHECK(default_join_count(
                  env_of({{"SLURM_STEP_TASKS_PER_NODE", "7,1"}, {"SLURM_NODEID", "1"}})) == 1);
        CHECK(error_of([] { default_join_count(env_of({})); }).find("give --join-ct") !=
              std::string::npos);
        CHECK(error_of([] {
                  default_join_count(env_of({{"OMPI_COMM_WORLD_LOCAL_SIZE", "0"}}));
              }).find("bad OMPI_COMM_WORLD_LOCAL_SIZE=0") != std::string::npos);
        CHECK(error_of([] {
                  default_join_count(
                      env_of({{"SLURM_STEP_TASKS_PER_NODE", "2"}, {"SLURM_NODEID", "x"}}));
              }).find("bad SLURM_NODEID=x") != std::string::npos);
    }

    TEST_CASE("join: the default tag is the Slurm job and step, else PMIx, else the parent") {
        CHECK(default_join_tag(
                  env_of({{"SLURM_JOB_ID", "42"}, {"SLURM_STEP_ID", "3"}, {"PMIX_NAMESPACE", "x"}}),
                  7) == "slurm-42.3");
        CHECK(default_join_tag(env_of({{"SLURM_JOB_ID", "42"}, {"PMIX_NAMESPACE", "prte@1"}}), 7) ==
              "pmix-prte@1");
        CHECK(default_join_tag(env_of({}), 7) == "ppid-7");
    }

    TEST_CASE("join: object names are per user, escaped, and bounded") {
        CHECK(join_object_name(1000, "slurm-42.3") == "ch-run-join.1000.slurm-42.3");
        CHECK(join_object_name(0, "slurm-42.3") != join_object_name(1000, "slurm-42.3"));
        CHECK(join_object_name(1000, "a/../b c") == "ch-run-join.1000.a%2f..%2fb%20c");
        const std::string a = join_object_name(1000, std::string(300, 'x') + "a");
        const std::string b = join_object_name(1000, std::string(300, 'x') + "b");
        CHECK(a.size() < 255);
        CHECK(a != b);
    }

    TEST_CASE("join: timeouts are seconds, to the millisecond, within a day") {
        CHECK(parse_join_timeout("30") == 30'000ms);
        CHECK(parse_join_timeout("2.5") == 2'500ms);
        CHECK(parse_join_timeout("0.001") == 1ms);
        for (const char* bad : {"", "0", "0.0", "-1", "1.", ".5", "1.2345", "86401", "1e3", "x"})
            CHECK_MESSAGE(!parse_join_timeout(bad), bad);
    }

    TEST_CASE("join: 16 forked peers meet, and nothing is left behind") {
        test::TempDir dir;
        JoinSpec spec{"sixteen", 16, 10'000ms};
        for (int round = 0; round < 3; round++) {
            std::vector<pid_t> peers;
            for (int i = 0; i < 16; i++)
                peers.push_back(peer(spec, dir.path()));
            for (const pid_t p : peers)
                CHECK(wait_status(p) == 0);
            CHECK(becomes_empty(dir.path(), 2s));
        }
    }

    TEST_CASE("join: late peers still join after the first peer has exited") {
        test::TempDir dir;
        JoinSpec spec{"late", 4, 10'000ms};
        const pid_t first = peer(spec, dir.path());
        CHECK(wait_status(first) == 0); // gone before anyone else arrives
        std::vector<pid_t> peers;
        for (int i = 0; i < 3; i++)
            peers.push_back(peer(spec, dir.path(), 100ms));
        for (const pid_t p : peers)
            CHECK(wait_status(p) == 0);
        CHECK(becomes_empty(dir.path(), 2s));
    }

    TEST_CASE("join: a peer that never comes: the others proceed, the holder cleans up") {
        test::TempDir dir;
        JoinSpec spec{"short", 3, 500ms};
        const pid_t a = peer(spec, dir.path());
        const pid_t b = peer(spec, dir.path(), 50ms);
        CHECK(wait_status(a) == 0);
        CHECK(wait_status(b) == 0);
        CHECK(becomes_empty(dir.path(), 3s));
    }

    TEST_CASE("join: a first peer that dies while building: the others fail fast, no file left") {
        test::TempDir dir;
        JoinSpec spec{"dies", 2, 20'000ms};
        const pid_t first = ::fork();
        REQUIRE(first >= 0);
        if (first == 0) {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            ::pause(); // building "forever", until killed
            ::_exit(0);
        }
        while (entries(dir.path()).empty())
            std::this_thread::sleep_for(5ms);
        const auto start = std::chrono::steady_clock::now();
        std::string err;
        {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            CHECK(!g.first());
            ::kill(first, SIGKILL);
            wait_status(first);
            err = error_of([&] { g.wait_for_container(); });
        }
        CHECK(err.find("join group dies: the first peer (pid ") != std::string::npos);
        CHECK(err.find("exited before its container was ready") != std::string::npos);
        CHECK(std::chrono::steady_clock::now() - start < 10s);
        CHECK(becomes_empty(dir.path(), 1s));
    }

    TEST_CASE("join: the timeout names the tag and how many peers arrived") {
        test::TempDir dir;
        JoinSpec spec{"slow", 3, 300ms};
        const pid_t first = ::fork();
        REQUIRE(first >= 0);
        if (first == 0) {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            ::pause();
            ::_exit(0);
        }
        while (entries(dir.path()).empty())
            std::this_thread::sleep_for(5ms);
        std::string err;
        {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            err = error_of([&] { g.wait_for_container(); });
        }
        ::kill(first, SIGKILL);
        wait_status(first);
        CHECK(err ==
              "join group slow: timed out after 0.3 s waiting for the first peer's container "
              "(2 of 3 peers arrived)");
        CHECK(entries(dir.path()).empty());
    }

    TEST_CASE("join: the first peer's failure reaches the others") {
        test::TempDir dir;
        JoinSpec spec{"fails", 2, 5'000ms};
        JoinGroup first = JoinGroup::arrive(spec, dir.path());
        REQUIRE(first.first());
        JoinGroup other = JoinGroup::arrive(spec, dir.path());
        first.publish_failed("can't mount x: no");
        CHECK(error_of([&] { other.wait_for_container(); }) ==
              "join group fails: the first peer failed: can't mount x: no");
        CHECK(entries(dir.path()).empty());
    }

    TEST_CASE("join: peers must agree on the count") {
        test::TempDir dir;
        JoinGroup first = JoinGroup::arrive({"ct", 3, 1'000ms}, dir.path());
        CHECK(error_of([&] {
                  JoinGroup::arrive({"ct", 4, 1'000ms}, dir.path());
              }).find("this peer counts 4 peers, but the group was made for 3") !=
              std::string::npos);
        first.publish_failed("test over");
    }

    TEST_CASE("join: a peer that finds a complete group starts a new one") {
        // The moment between the last peer's arrival and its removing the
        // name, held open: a hard link keeps the complete object, and it is
        // put back under the name after the last peer removed it.
        test::TempDir dir;
        const JoinSpec spec{"extra", 2, 1'000ms};
        const fs::path named = dir.path() / join_object_name(::geteuid(), "extra");
        JoinGroup a = JoinGroup::arrive(spec, dir.path());
        REQUIRE(a.first());
        REQUIRE(::link(named.c_str(), (dir.path() / "kept").c_str()) == 0);
        JoinGroup b = JoinGroup::arrive(spec, dir.path());
        REQUIRE_FALSE(b.first());
        REQUIRE(::rename((dir.path() / "kept").c_str(), named.c_str()) == 0);
        JoinGroup c = JoinGroup::arrive(spec, dir.path());
        CHECK(c.first());
        CHECK(c.arrived() == 1);
        CHECK(b.arrived() == 2); // the complete group is untouched
        c.publish_failed("test over");
        a.publish_failed("test over");
        CHECK(entries(dir.path()).empty());
    }

    TEST_CASE("join: planted objects are refused, never followed") {
        test::TempDir dir;
        const std::string name = join_object_name(::geteuid(), "planted");
        const fs::path obj = dir.path() / name;
        SUBCASE("symlink") {
            const fs::path target = dir.path() / "target";
            { std::ofstream(target) << "x"; }
            fs::create_symlink(target, obj);
            CHECK(error_of([&] {
                      JoinGroup::arrive({"planted", 2, 1'000ms}, dir.path());
                  }).find(": it is a symbolic link") != std::string::npos);
            CHECK(fs::file_size(target) == 1); // not truncated through the link
        }
        SUBCASE("wrong mode") {
            { std::ofstream(obj) << std::string(200, '\0'); }
            fs::permissions(obj, fs::perms(0644));
            CHECK(error_of([&] {
                      JoinGroup::arrive({"planted", 2, 1'000ms}, dir.path());
                  }).find("not a join object of this user's (owner uid") != std::string::npos);
        }
        SUBCASE("right mode, wrong content") {
            { std::ofstream(obj) << "hello"; }
            fs::permissions(obj, fs::perms(0600));
            CHECK(error_of([&] {
                      JoinGroup::arrive({"planted", 2, 1'000ms}, dir.path());
                  }).find("refusing") != std::string::npos);
        }
        SUBCASE("a fifo") {
            REQUIRE(::mkfifo(obj.c_str(), 0600) == 0);
            CHECK(error_of([&] {
                      JoinGroup::arrive({"planted", 2, 1'000ms}, dir.path());
                  }).find("not a regular file") != std::string::npos);
        }
    }

    TEST_CASE("join: a stale object of one's own is replaced") {
        test::TempDir dir;
        JoinSpec spec{"stale", 2, 5'000ms};
        const pid_t dead = ::fork();
        REQUIRE(dead >= 0);
        if (dead == 0) {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            ::_exit(0); // left its object, never built
        }
        wait_status(dead);
        REQUIRE(entries(dir.path()).size() == 1);
        JoinGroup g = JoinGroup::arrive(spec, dir.path());
        CHECK(g.first());
        g.publish_failed("test over");
        CHECK(entries(dir.path()).empty());
    }

    TEST_CASE("join: --join-pid refuses a process outside any container") {
        CHECK(error_of([] { container_namespaces(::getpid()); }).find("it is not in a container") !=
              std::string::npos);
        CHECK(error_of([] { container_namespaces(0); }).find("not a process id") !=
              std::string::npos);
        if (::geteuid() != 0)
            CHECK(error_of([] { container_namespaces(1); }).find("another user's process") !=
                  std::string::npos);
    }

    TEST_CASE("join: SIGTERM while building: the others learn why, nothing is left") {
        test::TempDir dir;
        JoinSpec spec{"term", 3, 20'000ms};
        const auto arrive_and_wait = [&] {
            const pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                JoinGroup g = JoinGroup::arrive(spec, dir.path());
                ::pause(); // "building", or waiting, until the signal
                ::_exit(0);
            }
            return pid;
        };
        const pid_t first = arrive_and_wait();
        while (entries(dir.path()).empty())
            std::this_thread::sleep_for(5ms);
        std::string err;
        {
            JoinGroup g = JoinGroup::arrive(spec, dir.path());
            REQUIRE(!g.first());
            ::kill(first, SIGTERM);
            CHECK(wait_status(first) == 128 + SIGTERM);
            err = error_of([&] { g.wait_for_container(); });
        }
        CHECK(err == "join group term: the first peer failed: it was stopped by a signal");
        CHECK(entries(dir.path()).empty());

        // Every peer stopped before the last arrives: the last one out
        // removes the name.
        const pid_t a = arrive_and_wait();
        while (entries(dir.path()).empty())
            std::this_thread::sleep_for(5ms);
        const pid_t b = arrive_and_wait();
        std::this_thread::sleep_for(100ms);
        ::kill(b, SIGTERM);
        ::kill(a, SIGTERM);
        CHECK(wait_status(a) == 128 + SIGTERM);
        CHECK(wait_status(b) == 128 + SIGTERM);
        CHECK(entries(dir.path()).empty());
    }
}
