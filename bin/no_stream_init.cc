// no_stream_init.cc: std::ios_base::Init made to do nothing, for ch-run's
// static link only (the Makefile links this object, with --wrap for the two
// symbols below, into that link and no other).
//
// Why: yaml-cpp's parser includes <iostream>, whose static ios_base::Init
// object constructs std::cout, std::cin, std::cerr, std::clog and their wide
// twins at every start of the process, and with them every facet of the
// classic locale. ch-run never uses those eight streams: it prints with
// stdio, and test/checks/link-deps.sh fails the build's checks if any
// function linked into ch-run but ios_base::Init's own names one of them.
// Skipping that work saves 0.15-0.27 ms of a `ch-run DIR -- true` here
// (3-5%: page faults cost about 11 us each on our CI machines, and the
// locale's code is spread over many pages), and ch-run starts once per MPI
// rank. The streams ch-run does use (yaml-cpp's string streams, when there
// is a configuration file) still set up the classic locale themselves, when
// they first need it.
extern "C" {
// NOLINTBEGIN(bugprone-reserved-identifier,readability-identifier-naming): the
// names --wrap gives
void __wrap__ZNSt8ios_base4InitC1Ev(void* self);
void __wrap__ZNSt8ios_base4InitD1Ev(void* self);

void __wrap__ZNSt8ios_base4InitC1Ev(void* /*self*/) {}

void __wrap__ZNSt8ios_base4InitD1Ev(void* /*self*/) {}

// NOLINTEND(bugprone-reserved-identifier,readability-identifier-naming)
}
