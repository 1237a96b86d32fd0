// plan_test.cc: the exact steps ch-run plans for each option combination.
#include <set>

#include <doctest/doctest.h>

#include "run/plan.hh"
#include "util/error.hh"

using namespace ch::run;

namespace {

HostFacts host(std::set<std::string> in_image = {}) {
    HostFacts h;
    h.euid = 1000;
    h.egid = 100;
    h.user = "alice";
    h.home = "/home/alice";
    h.tmpdir = "/tmp";
    h.group_name = "users";
    h.gecos = "Alice";
    h.image_has = [in_image](const fs::path& p) {
        return in_image.count(p.string()) > 0;
    };
    return h;
}

RunOptions opts() {
    RunOptions o;
    o.image_ref = "/img";
    o.command = {"true"};
    return o;
}

// Where the default binds start: after the generated files and SealScratch.
std::size_t first_default_bind(const Plan& p) {
    for (std::size_t i = 0; i < p.steps.size(); i++)
        if (std::holds_alternative<SealScratch>(p.steps[i]))
            return i + 1;
    FAIL("no SealScratch step");
    return 0;
}

// The steps after the default binds (which are checked on their own).
std::vector<std::string> tail_steps(const Plan& p) {
    std::vector<std::string> out;
    for (std::size_t i = first_default_bind(p) + default_binds().size(); i < p.steps.size(); i++)
        out.push_back(describe(p.steps[i]));
    return out;
}

} // namespace

TEST_SUITE("run/plan") {
    TEST_CASE(
        "plan: defaults: one-line id maps, read-only image, passwd, seal, default binds, /tmp") {
        const Plan p = make_plan(opts(), "/img", host());
        CHECK(p.uid.inside == 1000);
        CHECK(p.uid.outside == 1000);
        CHECK(p.gid.inside == 100);
        CHECK_FALSE(p.writable_root());
        CHECK(p.cwd == "/");
        // Generated files first: they are bound from the scratch space, which
        // is sealed before any recursive bind could carry it along.
        REQUIRE(p.steps.size() == 3 + default_binds().size() + 1);
        CHECK(describe(p.steps[0]).starts_with("write /etc/passwd ("));
        CHECK(describe(p.steps[0]).ends_with(", required)"));
        CHECK(describe(p.steps[1]).starts_with("write /etc/group ("));
        CHECK(describe(p.steps[2]) == "seal scratch space (unbindable from here on)");
        CHECK(describe(p.steps[3]) == "bind /dev -> /dev (required)");
        CHECK(describe(p.steps[4]) == "bind /proc -> /proc (required)");
        CHECK(describe(p.steps[5]) == "bind /sys -> /sys (required)");
        CHECK(describe(p.steps[6]) == "bind /etc/hosts -> /etc/hosts (optional)");
        CHECK(tail_steps(p) == std::vector<std::string>{"bind /tmp -> /tmp (required)"});
        const auto* pw = std::get_if<WriteFile>(&p.steps[0]);
        REQUIRE(pw != nullptr);
        CHECK(pw->content.find("alice:x:1000:100:Alice:/home/alice:/bin/sh\n") !=
              std::string::npos);
    }

    TEST_CASE("plan: describe lists the steps in the order apply runs them") {
        const Plan p = make_plan(opts(), "/img", host());
        std::string expected;
        for (const auto& s : p.steps)
            expected += describe(s) + "\n";
        const std::string d = describe(p);
        CHECK(d.find(expected) != std::string::npos);
        // With --no-passwd the seal still comes before the first bind.
        auto o = opts();
        o.no_passwd = true;
        CHECK(std::holds_alternative<SealScratch>(make_plan(o, "/img", host()).steps[0]));
    }

    TEST_CASE("plan: --uid/--gid change the inside of the map only") {
        auto o = opts();
        o.uid = 0;
        o.gid = 0;
        const Plan p = make_plan(o, "/img", host());
        CHECK(p.uid.inside == 0);
        CHECK(p.uid.outside == 1000);
        CHECK(p.gid.inside == 0);
        CHECK(p.gid.outside == 100);
    }

    TEST_CASE("plan: --no-passwd, -t, $TMPDIR, --cd") {
        auto o = opts();
        o.no_passwd = true;
        o.private_tmp = true;
        o.cd = "/work";
        Plan p = make_plan(o, "/img", host());
        CHECK(tail_steps(p) == std::vector<std::string>{"tmpfs -> /tmp (mode=1777)"});
        CHECK(p.cwd == "/work");
        o.private_tmp = false;
        auto h = host();
        h.tmpdir = "/scratch/tmp";
        p = make_plan(o, "/img", h);
        CHECK(tail_steps(p) == std::vector<std::string>{"bind /scratch/tmp -> /tmp (required)"});
    }

    TEST_CASE("plan: user binds keep their order and need their destination unless writable") {
        auto o = opts();
        o.no_passwd = true;
        o.bind = {{"/scratch", "/scratch"}, {"/data", "/mnt/0/../1"}};
        Plan p = make_plan(o, "/img", host());
        CHECK(tail_steps(p) == std::vector<std::string>{"bind /tmp -> /tmp (required)",
                                                        "bind /scratch -> /scratch (required)",
                                                        "bind /data -> /mnt/1 (required)"});
        o.write_fake = "1G";
        p = make_plan(o, "/img", host());
        CHECK(p.overlay_size == "1G");
        CHECK(tail_steps(p).back() == "bind /data -> /mnt/1 (create destination)");
        o.write_fake.reset();
        o.write = true;
        p = make_plan(o, "/img", host());
        CHECK(p.write);
        CHECK(tail_steps(p).back() == "bind /data -> /mnt/1 (create destination)");
    }

    TEST_CASE("plan: bad bind destinations are usage errors") {
        auto o = opts();
        o.bind = {{"/a", "relative"}};
        CHECK_THROWS_WITH_AS(make_plan(o, "/img", host()),
                             doctest::Contains("must be an absolute path"), ch::UsageError);
        o.bind = {{"/a", "/"}};
        CHECK_THROWS_WITH_AS(make_plan(o, "/img", host()),
                             doctest::Contains("can't be the image root"), ch::UsageError);
        o.bind = {{"/a", "/mnt/../../etc"}};
        CHECK_THROWS_WITH_AS(
            make_plan(o, "/img", host()),
            doctest::Contains("can't bind /a to /mnt/../../etc: destination escapes the image"),
            ch::UsageError);
    }

    TEST_CASE("plan: --home binds $HOME; adds -W only if /home/$USER must be created") {
        auto o = opts();
        o.no_passwd = true;
        o.home = true;
        Plan p = make_plan(o, "/img", host());
        CHECK(p.overlay_size == write_fake_default_size);
        CHECK(tail_steps(p).back() == "bind /home/alice -> /home/alice (create destination)");
        p = make_plan(o, "/img", host({"/home/alice"}));
        CHECK_FALSE(p.overlay_size.has_value());
        CHECK(tail_steps(p).back() == "bind /home/alice -> /home/alice (required)");
        auto h = host();
        h.home.reset();
        CHECK_THROWS_WITH_AS(make_plan(o, "/img", h), doctest::Contains("$HOME not set"),
                             ch::UsageError);
    }

    TEST_CASE("plan: describe shows the maps and the image mode") {
        auto o = opts();
        o.write_fake = "12%";
        const std::string d = describe(make_plan(o, "/img", host()));
        CHECK(d.starts_with(
            "uid map: 1000 1000 1\ngid map: 100 100 1\nimage: /img (overlay on tmpfs size=12%)\n"));
        CHECK(d.ends_with("cd /"));
    }
}
