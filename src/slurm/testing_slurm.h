// File: slurm/testing_slurm.h
//
// Test kit: a real, throwaway single-node Slurm cluster (munged + slurmctld +
// slurmd) for test suites: this module's, and the pipeline engine's Slurm
// executor tests.
//
//   static std::unique_ptr<Cluster> cluster;       // one per test suite
//   cluster = *Cluster::Start();                   // ~0.1-0.3 s
//   slurm::Client client(cluster->options());
//   auto id = client.Submit({.name = "t", .script_path = ..., ...});
//
// Everything lives in a fresh temp dir /tmp/takt-slurm-XXXXXX (mode 0755,
// which munged requires of every directory above its socket):
//   etc/slurm.conf   a private SLURM_CONF; options() points Client at it
//   munge/           munged's socket; munge-key/ (0700) its fresh random key
//   state/ spool/    StateSaveLocation, SlurmdSpoolDir
//   log/             munged.out, slurmctld.log, slurmd.log (+ the daemons' stderr)
//   pids/            the daemons' pids, for the watchdog
// The cluster has its own ClusterName, free ports for SlurmctldPort and
// SlurmdPort (picked again if another process takes them first), one node
// named after this host's short hostname with the CPUs, topology and
// RealMemory `slurmd -C` reports (DefMemPerCPU=256 for jobs that ask for no
// memory), one default partition `takt`, no
// accounting (so no sacct), MinJobAge=3600 (finished jobs stay visible to
// squeue for an hour), EnforcePartLimits=ALL (a job no node can ever hold is
// refused at submission), KillWait=2 and OverTimeLimit=0 (a job past its
// time limit dies within about a minute), ProctrackType=proctrack/linuxproc
// and TaskPlugin=task/none (no cgroups, so no memory enforcement). The
// system's /etc/slurm, /etc/munge and daemons are never touched, and two
// processes can run clusters side by side.
//
// Start() needs root (slurmd runs jobs as their submitting user) and returns
// once `sinfo` shows the node idle.
//
// Lifetime: a watchdog process (/bin/sh, in its own session) holds a socket
// from the test process and does all the cleanup: it cancels the jobs, stops
// slurmd and slurmctld, kills job steps that outlived slurmd (each holds
// slurmd's log in this dir open), stops munged and removes the dir. The
// destructor asks it to and waits; if the test process dies without running
// the destructor (a crash, std::abort, SIGKILL), the socket closes and the
// watchdog cleans up just the same.
//
// Thread safety: Start() and the destructor are not concurrent with anything;
// the accessors are const and may be used from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "slurm/slurm.h"

namespace takt::slurm::testing {

class Cluster {
 public:
  // FailedPrecondition "install slurm-wlm and munge (scripts/install-deps.sh)"
  // when a daemon or command is missing, or when not running as root;
  // Internal with the tail of the daemons' logs when they do not come up.
  static Result<std::unique_ptr<Cluster>> Start();
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // For Client: /usr/bin commands, the private slurm.conf, partition `takt`.
  Options options() const;
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path conf_path() const { return dir_ / "etc" / "slurm.conf"; }
  // The node: its name (this host's short hostname), CPUs and RealMemory.
  const std::string& node_name() const { return node_name_; }
  int cpus() const { return cpus_; }
  int64_t memory_mb() const { return memory_mb_; }
  int slurmctld_port() const { return slurmctld_port_; }

 private:
  Cluster() = default;
  Status Init();
  Status StartWatchdog();
  Status ReadHardware();
  Status StartMunge();
  // One attempt at slurmctld + slurmd on fresh ports: false if a port was
  // taken by someone else meanwhile (the daemons are stopped again).
  Result<bool> TryStartSlurm();
  Status WriteConf();
  Result<pid_t> SpawnDaemon(const std::string& name, const std::vector<std::string>& argv);
  // Waits until `port` accepts connections; Internal if `pid` exits first.
  Status WaitListening(const std::string& name, pid_t& pid, int port);
  Status WaitIdle();
  void StopSlurmDaemons();
  void Reap(pid_t& pid);
  // "slurmctld.log: ...\nslurmd.log: ..." (the last lines of each).
  std::string LogTails() const;

  std::filesystem::path dir_;
  std::string node_name_;
  std::string node_line_;  // NodeName=... for slurm.conf
  int cpus_ = 0;
  int64_t memory_mb_ = 0;
  int slurmctld_port_ = 0;
  int slurmd_port_ = 0;
  pid_t munged_pid_ = -1;
  pid_t slurmctld_pid_ = -1;
  pid_t slurmd_pid_ = -1;
  pid_t watchdog_pid_ = -1;
  int watchdog_fd_ = -1;  // our end of the watchdog's socket
};

}  // namespace takt::slurm::testing
