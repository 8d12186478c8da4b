// File: slurm/command.h
//
// Runs one external program (sbatch, squeue, slurmd -C, ...) the safe way:
// posix_spawn of an absolute path with an argv and an explicit environment,
// never a shell, so no argument is ever interpreted. stdin is /dev/null;
// stdout and stderr are captured (each capped at 4 MiB). The child runs in a
// process group of its own, and the whole group is killed (SIGKILL) when it
// outlives the timeout.
//
// Errors: FailedPrecondition when the program does not exist or is not
// executable; Unavailable when it times out; Internal for pipe/spawn
// failures. A non-zero exit is not an error here: the caller reads
// exit_code and stderr.
//
// Thread-safe: no shared state; pipes are close-on-exec, so a program started
// by another thread at the same moment does not inherit them.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace takt::slurm {

struct CommandOutput {
  int exit_code = -1;  // the exit status, or 128 + signal when killed by one
  std::string out;
  std::string err;
};

// argv[0] is an absolute path; env holds "NAME=value" strings and is the
// program's whole environment. When `fd3` is given, the program finds those
// bytes on its file descriptor 3 (an in-memory file, read to its end), e.g.
// for `sbatch --export-file=3`: data that must not appear on a command line.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                 double timeout_seconds, const std::string* fd3 = nullptr);

}  // namespace takt::slurm
