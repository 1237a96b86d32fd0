// passwd.hh: the synthetic /etc/passwd and /etc/group (pure), so that the
// container knows the invoking user's name whatever the image contains.
#pragma once

#include <string>

#include <sys/types.h>

namespace ch::run {

struct Account {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string user;  // $USER
    std::string group; // host group name of gid, or the user name
    std::string gecos;
    std::string home; // inside the container
};

std::string make_passwd(const Account& a);
std::string make_group(const Account& a);

} // namespace ch::run
