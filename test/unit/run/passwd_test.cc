// passwd_test.cc: the synthetic user and group databases.
#include <algorithm>

#include <doctest/doctest.h>

#include "run/passwd.hh"

using namespace ch::run;

TEST_SUITE("run/passwd") {
    TEST_CASE("passwd: the invoking user appears between root and nobody") {
        const Account a{1000, 1001, "alice", "staff", "Alice A", "/home/alice"};
        CHECK(make_passwd(a) == "root:x:0:0:root:/root:/bin/sh\n"
                                "alice:x:1000:1001:Alice A:/home/alice:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/:/bin/false\n");
        CHECK(make_group(a) == "root:x:0:\nstaff:x:1001:\nnogroup:x:65534:\n");
    }

    TEST_CASE("passwd: uid 0 is not listed twice") {
        const Account a{0, 0, "root", "root", "", "/home/root"};
        CHECK(make_passwd(a) ==
              "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
        CHECK(make_group(a) == "root:x:0:\nnogroup:x:65534:\n");
    }

    TEST_CASE("passwd: a GECOS with ':' or a newline can't add fields or records") {
        const Account a{1000, 1000, "bob", "bob", "x:0:0:evil\nroot2", "/home/bob"};
        const std::string p = make_passwd(a);
        CHECK(p.find("bob:x:1000:1000:x 0 0 evil root2:/home/bob:/bin/sh\n") != std::string::npos);
        CHECK(std::count(p.begin(), p.end(), '\n') == 3);
    }
}
