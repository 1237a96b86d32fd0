// join_plan_test.cc: what ch-run adds for HPC jobs: the PMIx server's
// directories bound at the same path, the site configuration's binds in
// their place, and the launcher's variables kept in the environment.
#include <doctest/doctest.h>

#include "run/env.hh"
#include "run/plan.hh"
#include "run/pmix.hh"
#include "util/error.hh"

using namespace ch::run;

namespace {

HostFacts host() {
    HostFacts h;
    h.euid = 1000;
    h.egid = 100;
    h.user = "alice";
    h.home = "/home/alice";
    h.tmpdir = "/tmp";
    h.image_has = [](const fs::path&) {
        return false;
    };
    return h;
}

RunOptions opts() {
    RunOptions o;
    o.image_ref = "/img";
    o.command = {"true"};
    return o;
}

std::vector<std::string> binds_after_tmp(const Plan& p) {
    std::vector<std::string> out;
    bool seen_tmp = false;
    for (const auto& s : p.steps) {
        if (seen_tmp)
            out.push_back(describe(s));
        if (const auto* b = std::get_if<Bind>(&s); b != nullptr && b->dst == "/tmp")
            seen_tmp = true;
    }
    return out;
}

std::string get(const EnvVars& env, const std::string& k) {
    for (const auto& [name, v] : env)
        if (name == k)
            return v;
    return "<unset>";
}

} // namespace

TEST_SUITE("run/join") {
    TEST_CASE("plan: PMIx directories are bound at the same path unless already visible") {
        HostFacts h = host();
        h.pmix_dirs = {"/var/spool/slurm/pmix.5.0", "/tmp/prte.x", "/dev/shm/pmix"};
        const Plan p = make_plan(opts(), "/img", h);
        CHECK(binds_after_tmp(p) ==
              std::vector<std::string>{"bind /var/spool/slurm/pmix.5.0 -> "
                                       "/var/spool/slurm/pmix.5.0 (optional)"});
        h.tmpdir = "/scratch/alice"; // then /tmp in the container is not the host's
        RunOptions w = opts();
        w.write_fake = "1g"; // still optional: pmix.hh reaches what can't be bound
        const Plan q = make_plan(w, "/img", h);
        CHECK(binds_after_tmp(q) ==
              std::vector<std::string>{
                  "bind /var/spool/slurm/pmix.5.0 -> /var/spool/slurm/pmix.5.0 (optional)",
                  "bind /tmp/prte.x -> /tmp/prte.x (optional)"});
    }

    TEST_CASE("pmix: variables under a directory are pointed at its descriptor") {
        const auto env = rewrite_pmix_paths(
            {"PMIX_SERVER_TMPDIR=/var/spool/slurmd/pmix.5.0/",
             "PMIX_DSTORE_21_BASE_PATH=/var/spool/slurmd/pmix.5.0/pmix_dstor_ds21_7",
             "PMIX_SYSTEM_TMPDIR=/tmp", "PMIX_OTHER=/var/spool/slurmd/pmix.5.00",
             "SLURM_X=/var/spool/slurmd/pmix.5.0", "PMIX_RANK=0"},
            "/var/spool/slurmd/pmix.5.0/", "/proc/self/fd/9");
        CHECK(env == EnvVars{{"PMIX_SERVER_TMPDIR", "/proc/self/fd/9/"},
                             {"PMIX_DSTORE_21_BASE_PATH", "/proc/self/fd/9/pmix_dstor_ds21_7"}});
    }

    TEST_CASE("plan: site binds come after the PMIx directories and before -b") {
        RunOptions o = opts();
        o.site_bind = {{{"/lustre", "/lustre"}, true, "/etc/ch/config.yaml:3:7"},
                       {{"/scratch", "/mnt/scratch"}, false, "/etc/ch/config.yaml:4:7"}};
        o.bind = {{"/data", "/data"}};
        const Plan p = make_plan(o, "/img", host());
        CHECK(binds_after_tmp(p) ==
              std::vector<std::string>{"bind /lustre -> /lustre (optional)",
                                       "bind /scratch -> /mnt/scratch (required)",
                                       "bind /data -> /data (required)"});
        o.site_bind = {{{"/x", "relative"}, false, "/etc/ch/config.yaml:9:5"}};
        try {
            make_plan(o, "/img", host());
            FAIL("no error");
        } catch (const ch::UsageError&) {
            FAIL("a site bind is not a usage error");
        } catch (const ch::Error& e) {
            CHECK(std::string(e.what()) ==
                  "/etc/ch/config.yaml:9:5: can't bind /x to relative: destination must be an "
                  "absolute path");
        }
    }

    TEST_CASE("env: site values come first, launcher variables survive --unset-env") {
        EnvInputs in;
        in.home = "/";
        in.site_set = {{"OMP_PROC_BIND", "close"}, {"SITE", "a"}};
        EnvDelta set;
        set.vars = {{"SITE", "b"}};
        EnvDelta unset_all;
        unset_all.kind = EnvDelta::Kind::unset;
        unset_all.glob = "*";
        EnvDelta again;
        again.vars = {{"PMIX_RANK", "9"}};
        in.deltas = {set, unset_all, again};
        in.pass = {"UCX_*", "MY_VAR"};
        const auto env = build_environment({"PATH=/bin", "SLURM_JOB_ID=5", "PMIX_RANK=1",
                                            "PMI_FD=3", "OMPI_COMM_WORLD_RANK=0", "PRTE_X=1",
                                            "UCX_TLS=sm", "MY_VAR=1", "MY_VAR2=1", "OTHER=1"},
                                           in);
        CHECK(get(env, "SLURM_JOB_ID") == "5");
        CHECK(get(env, "PMIX_RANK") == "9"); // set on purpose: that wins
        CHECK(get(env, "PMI_FD") == "3");
        CHECK(get(env, "OMPI_COMM_WORLD_RANK") == "0");
        CHECK(get(env, "PRTE_X") == "1");
        CHECK(get(env, "UCX_TLS") == "sm");
        CHECK(get(env, "MY_VAR") == "1");
        CHECK(get(env, "MY_VAR2") == "<unset>");
        CHECK(get(env, "OTHER") == "<unset>");
        CHECK(get(env, "SITE") == "<unset>");
        CHECK(env.back().first == "CH_RUNNING");

        EnvInputs site;
        site.home = "/";
        site.site_set = {{"SITE", "a"}};
        EnvDelta user;
        user.vars = {{"SITE", "b"}};
        site.deltas = {user};
        CHECK(get(build_environment({"SITE=host"}, site), "SITE") == "b");
        site.deltas = {};
        CHECK(get(build_environment({"SITE=host"}, site), "SITE") == "a");
    }
}
