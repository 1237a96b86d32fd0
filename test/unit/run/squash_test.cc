// squash_test.cc: the plan for a SquashFS image (pure) and where it mounts.
#include <doctest/doctest.h>

#include "run/plan.hh"
#include "util/error.hh"

using namespace ch::run;

TEST_SUITE("run") {

    namespace {
    HostFacts host() {
        HostFacts h;
        h.euid = 1000;
        h.egid = 1000;
        h.user = "alice";
        h.home = "/home/alice";
        h.image_has = [](const fs::path&) {
            return true;
        };
        return h;
    }
    } // namespace

    TEST_CASE("plan: a SquashFS image mounts first, then runs like its mount point") {
        RunOptions o;
        o.image_ref = "/scratch/img.sqfs";
        o.command = {"true"};
        const Plan dir = make_plan(o, "/var/tmp/alice.ch/mnt", host());
        const Plan sq = make_squash_plan(o, "/scratch/img.sqfs", "/var/tmp/alice.ch", host());
        REQUIRE(sq.squash.has_value());
        CHECK(sq.squash->file == "/scratch/img.sqfs");
        CHECK(sq.squash->mount_dir == "/var/tmp/alice.ch/mnt");
        CHECK(sq.image == "/var/tmp/alice.ch/mnt");
        CHECK_FALSE(dir.squash.has_value());
        // Everything after the mount is what a directory image there would get.
        const std::string mount_line = "squash: mount /scratch/img.sqfs on /var/tmp/alice.ch/mnt "
                                       "(FUSE, read-only, storage checked)\n";
        CHECK(describe(sq) == "uid map: 1000 1000 1\ngid map: 1000 1000 1\n" + mount_line +
                                  describe(dir).substr(describe(dir).find("image: ")));
        REQUIRE(sq.steps.size() == dir.steps.size());
        for (std::size_t i = 0; i < sq.steps.size(); i++)
            CHECK(describe(sq.steps[i]) == describe(dir.steps[i]));
    }

    TEST_CASE("plan: SquashFS with --uid 0") {
        RunOptions o;
        o.uid = 0;
        o.gid = 0;
        const Plan p = make_squash_plan(o, "/i.sqfs", "/m", host());
        CHECK(p.uid.inside == 0);
        CHECK(p.uid.outside == 1000);
        CHECK(p.gid.inside == 0);
        REQUIRE(p.squash.has_value());
    }

    TEST_CASE("plan: SquashFS with --home asks the image whether /home/$USER exists") {
        RunOptions o;
        o.home = true;
        HostFacts h = host();
        CHECK_FALSE(make_squash_plan(o, "/i.sqfs", "/m", h).overlay_size.has_value());
        // Without /home/alice in the image (and without -W): a writable overlay.
        h.image_has = [](const fs::path& path) {
            return path != "/home/alice";
        };
        CHECK(make_squash_plan(o, "/i.sqfs", "/m", h).overlay_size == write_fake_default_size);
    }

    TEST_CASE(
        "plan: the SquashFS mount point is -m DIR, else STORAGE/mnt (opened through STORAGE)") {
        RunOptions o;
        const Plan p = make_squash_plan(o, "/i.sqfs", "/var/tmp/alice.ch", host());
        REQUIRE(p.squash.has_value());
        CHECK(p.squash->mount_dir == "/var/tmp/alice.ch/mnt");
        CHECK(p.squash->storage == fs::path("/var/tmp/alice.ch"));
        CHECK(p.image == "/var/tmp/alice.ch/mnt");
        o.mount = "/scratch/mnt";
        const Plan q = make_squash_plan(o, "/i.sqfs", "/var/tmp/alice.ch", host());
        CHECK(q.squash->mount_dir == "/scratch/mnt");
        CHECK_FALSE(q.squash->storage.has_value());
    }

    TEST_CASE(
        "plan: -w on SquashFS creates nothing; with --home and no /home/$USER it is refused") {
        RunOptions o;
        o.write = true;
        o.bind.push_back({"/src", "/mnt/new"});
        HostFacts h = host();
        h.image_has = [](const fs::path&) {
            return false;
        };
        const Plan p = make_squash_plan(o, "/i.sqfs", "/s", h);
        CHECK_FALSE(p.writable_root());
        CHECK(describe(p.steps.back()) == "bind /src -> /mnt/new (required)");
        o.home = true;
        CHECK_THROWS_WITH_AS(
            make_squash_plan(o, "/i.sqfs", "/s", h),
            doctest::Contains("can't use --home with -w on SquashFS image /i.sqfs: "
                              "/home/alice must be created"),
            ch::Error);
        // The image has it: nothing to create, so nothing to refuse.
        h.image_has = [](const fs::path& path) {
            return path == "/home/alice";
        };
        CHECK_FALSE(make_squash_plan(o, "/i.sqfs", "/s", h).writable_root());
        // -W with -w: the overlay takes the writes.
        o.write_fake = "1m";
        h.image_has = [](const fs::path&) {
            return false;
        };
        CHECK(make_squash_plan(o, "/i.sqfs", "/s", h).overlay_size == "1m");
    }

} // TEST_SUITE
