// errors.h: the exceptions the engine throws for bad input from outside (files
// and data) and for files it cannot write. The app turns them into one-line
// messages and exit code 2.
#pragma once

#include <stdexcept>

namespace cvae {

// A malformed file: the message is "PATH: fault".
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A dataset directory or file that is not there.
class DataNotFound : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that could not be written (no space, no permission, a size limit):
// "PATH: fault". What was at PATH before is untouched (writes are atomic).
class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cvae
