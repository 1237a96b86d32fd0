// names_test.cc: how a pulled image's reference becomes its directory in
// storage and back (Charliecloud's mapping: '/' -> '%', ':' -> '+'), which
// is what lets `ch-run REF` find what `ch-image pull REF` stored.
#include <doctest/doctest.h>

#include "storage/layout.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::storage;

TEST_SUITE("storage/names") {

    TEST_CASE("names: references as pulled map to one directory name and back") {
        for (const auto& [ref, dir] : std::vector<std::pair<std::string, std::string>>{
                 {"alpine", "alpine"},
                 {"alpine:3.19", "alpine+3.19"},
                 {"127.0.0.1:5000/img/multi:latest", "127.0.0.1+5000%img%multi+latest"},
                 {"quay.io/org/app@sha256:abc", "quay.io%org%app@sha256+abc"},
                 {"a/b:1", "a%b+1"}}) {
            CAPTURE(ref);
            CHECK(ref_to_dirname(ref) == dir);
            CHECK(dirname_to_ref(dir) == ref);
            CHECK(is_image_name(ref));
            CHECK(image_dirname(ref) == dir);
            CHECK(image_dir("/st", ref) == fs::path("/st/img") / dir);
        }
    }

    TEST_CASE("names: what can't name an image in storage") {
        for (const char* bad :
             {"", ".", "..", "../x", "a/../b", "a%..%b", "/abs", ".hidden", "a//b"}) {
            CAPTURE(bad);
            CHECK(!is_image_name(bad));
            CHECK_THROWS_AS(image_dirname(bad), Error);
        }
    }
}
