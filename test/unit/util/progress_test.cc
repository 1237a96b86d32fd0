// progress_test.cc: what the transfer bars say (drawing needs a terminal,
// which the unit tests don't have: there, nothing is drawn at all).
#include <doctest/doctest.h>

#include "util/log.hh"
#include "util/progress.hh"

using namespace ch;

TEST_SUITE("util/progress") {

    TEST_CASE("progress: bytes, rate and time left from this run's bytes only") {
        CHECK(TransferMeter::describe(0, 2048, 0.0, 0) == "0 B / 2.0 KiB");
        // 1 MiB of 3 MiB in 1 s, all fetched now: 1 MiB/s, 2 s left.
        CHECK(TransferMeter::describe(1 << 20, 3 << 20, 1.0, 1 << 20) ==
              "1.0 MiB / 3.0 MiB  1.0 MiB/s  0:02 left");
        // 2 MiB were cached; 1 MiB fetched in 1 s: still 1 MiB/s, 0 s left.
        CHECK(TransferMeter::describe(3 << 20, 3 << 20, 1.0, 1 << 20) ==
              "3.0 MiB / 3.0 MiB  1.0 MiB/s");
        CHECK(TransferMeter::describe(1, 7200ull << 20, 1.0, 1) == "1 B / 7.0 GiB  1 B/s  "
                                                                   "2097151:59:59 left");
    }

    TEST_CASE("progress: a meter off a terminal draws nothing and survives any order") {
        TransferMeter m("layer");
        m.add("a", 10);
        m.advance("nope", 5); // unknown names are ignored
        m.begin("a", 0);
        m.advance("a", 10);
        m.retry("a", "timeout");
        m.done("a");
        m.done("a");
        m.clear();
    }
}
