#pragma once
// How the front end shows the library's log messages. The library names option fields in backticks
// ("`patience` has no effect ..."); a front end that knows its own spelling of them (the CLI's
// --patience) installs a rewrite here, applied to every message as it is written.
#include <functional>
#include <string>

namespace hemoscan {

// `rewrite` maps a message to what is shown; an empty function shows messages as they are.
void set_log_rewrite(std::function<std::string(const std::string&)> rewrite);

}  // namespace hemoscan
