// File: pipeline/slurm_step.h (internal to the pipeline module)
//
// The Slurm executor of command steps. The server prepares the step's folder
// exactly as for the local executor (code, inputs, model and output dirs),
// under the data directory, which on a cluster is a filesystem every node
// shares. It then writes the sandbox spec as JSON and a batch script that
// runs `takt internal sandbox-exec <spec> <result>` on the node, submits it
// with the step's CPUs, memory and time, and follows it:
//
//   <step dir>/job/spec.json    the sandbox spec (argv, env, mounts, limits)
//   <step dir>/job/step.sh      the batch script
//   <step dir>/job/out.log      the job's stdout+stderr: "o <line>" / "e <line>"
//                               from the sandbox, anything else from Slurm
//   <step dir>/job/result.json  how the program ended (written last, atomically)
//
// On the node the same sandbox runs as locally (bubblewrap, limits, disk
// quota, binary output sanitised), so a step behaves the same on either
// executor. The server tails out.log into the run's log as lines arrive and
// polls the job's state (squeue, then sacct); cancelling the step cancels the
// job (scancel: the node-side process turns SIGTERM into the sandbox's own
// cancellation). When the server stops, jobs are left running: their ids are
// recorded, and after a restart the engine reattaches to them; a job that
// finished meanwhile is collected from result.json.
#pragma once

#include <filesystem>
#include <string>

#include "core/json.h"
#include "core/result.h"
#include "pipeline/steps.h"
#include "sandbox/sandbox.h"

namespace takt::pipeline {

// Server side: runs `spec` as a Slurm job from `job_dir` (created if needed),
// or reattaches to env.slurm_job. Lines of the program reach `on_line` as
// they arrive. The result reads like sandbox::Run's; env.failure is set to
// "lost" when the job vanished without a result.
Result<sandbox::RunResult> RunSandboxOnSlurm(StepEnv& env, const sandbox::Spec& spec,
                                             const std::filesystem::path& job_dir,
                                             const sandbox::LineSink& on_line);

// Node side, for `takt internal sandbox-exec SPEC RESULT`: runs the spec in
// the sandbox, prints its lines with their stream, writes the result, and
// returns the process exit code (0 when the program succeeded, 1 when it did
// not, 2 when the spec could not be run at all; the reason is in RESULT).
int ExecSandboxJob(const std::string& spec_path, const std::string& result_path);

Json SandboxSpecToJson(const sandbox::Spec& spec);
Result<sandbox::Spec> SandboxSpecFromJson(const Json& j);
Json RunResultToJson(const sandbox::RunResult& r);
Result<sandbox::RunResult> RunResultFromJson(const Json& j);

}  // namespace takt::pipeline
