// passwd.cc: see passwd.hh.
#include "run/passwd.hh"

#include "util/strings.hh"

namespace ch::run {

namespace {
constexpr uid_t nobody = 65534;

// ':' and newlines would split or add records.
std::string field(std::string s) {
    for (auto& c : s)
        if (c == ':' || c == '\n')
            c = ' ';
    return s;
}
} // namespace

std::string make_passwd(const Account& a) {
    std::string out = "root:x:0:0:root:/root:/bin/sh\n";
    if (a.uid != 0 && a.uid != nobody)
        out += cat(field(a.user), ":x:", a.uid, ":", a.gid, ":", field(a.gecos), ":", field(a.home),
                   ":/bin/sh\n");
    out += "nobody:x:65534:65534:nobody:/:/bin/false\n";
    return out;
}

std::string make_group(const Account& a) {
    std::string out = "root:x:0:\n";
    if (a.gid != 0 && a.gid != nobody)
        out += cat(field(a.group), ":x:", a.gid, ":\n");
    out += "nogroup:x:65534:\n";
    return out;
}

} // namespace ch::run
