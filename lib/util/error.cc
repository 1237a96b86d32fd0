// error.cc: see error.hh.
#include "util/error.hh"

#include <cstring>

namespace ch {

Error::Error(std::string msg, Exit code)
    : msg_(std::move(msg))
    , code_(code) {}

void Error::add_context(std::string_view prefix) {
    msg_ = cat(prefix, ": ", msg_);
}

SysError::SysError(int err, std::string_view msg, Exit code)
    : Error(cat(msg, ": ", std::strerror(err)), code)
    , err_(err) {}

} // namespace ch
