// probe_test.cc: ch-checkns names the sysctl that switched user namespaces off.
#include <doctest/doctest.h>

#include "run/probe.hh"

using namespace ch::run;

TEST_SUITE("run/probe") {
    TEST_CASE("probe: each sysctl that disables user namespaces is named, with its fix") {
        UsernsSysctls s;
        CHECK_FALSE(explain_userns_failure(s).has_value());
        s.unprivileged_userns_clone = "0";
        CHECK(explain_userns_failure(s)->find("kernel.unprivileged_userns_clone = 0") !=
              std::string::npos);
        s.is_root = true; // the Debian switch doesn't apply to root
        CHECK_FALSE(explain_userns_failure(s).has_value());
        s = {};
        s.max_user_namespaces = "0";
        CHECK(explain_userns_failure(s)->find("sysctl -w user.max_user_namespaces=65536") !=
              std::string::npos);
        s = {};
        s.max_user_namespaces = "15000";
        s.apparmor_restrict_unprivileged = "1";
        CHECK(explain_userns_failure(s)->starts_with(
            "AppArmor restricts unprivileged user namespaces"));
        s.apparmor_restrict_unprivileged = "0";
        CHECK_FALSE(explain_userns_failure(s).has_value());
    }
}
