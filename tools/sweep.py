"""Runs algorithms x environments x seeds, on this machine or as one SLURM job array.

Every grid cell has its own folder, <root>/<algo>/<env>/seed<k>, passed to the script as --run-dir
(the script makes its run folder <env>__<algo>__<seed>__<time> inside it) and holding the cell's log,
sweep.log (stdout and stderr of every attempt, appended). Arguments after `--` go to every run.

Before running a cell the sweep reads the run folders already in it:
  - finished (its last evaluation is the last one the schedule has: step >= eval_freq * floor(total /
    eval_freq), i.e. total_timesteps when eval_freq divides it): skipped;
  - interrupted (a run folder that is not finished): continued with `--resume <run folder>` when the
    script's --help mentions --resume, else restarted in a fresh run folder (the sweep says so; the old
    folder stays, and tools/plot.py keeps the run of a seed that got furthest);
  - nothing yet: started.

    python tools/sweep.py --algos td3 sac --envs Hopper-v4 Walker2d-v4 --seeds 0 1 2 3 4 --local 2 \\
        --root runs/mujoco -- --total-timesteps 300000
    python tools/sweep.py ... --slurm --partition gpu --time 12:00:00 --cpus 4 --gpus 1
    python tools/sweep.py ... --dry-run          # the commands and what each cell would do

--local N runs N at a time and gives each run --torch-threads max(1, cores // N) (and the same
OMP_NUM_THREADS / MKL_NUM_THREADS) unless the arguments after `--` set --torch-threads. --slurm submits
the cells that need to run as one job array through submitit (--cpus per task, used as the thread
count), waits for it and prints the same summary; --slurm-executor local|debug runs that path without a
cluster. The sweep ends with the runs that failed and their logs; exit status 1 if any failed, 130 if
interrupted (running children get one SIGINT, so they write their logs and resumable state), 2 on bad input.
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANAGED = ("--env", "--seed", "--run-dir", "--resume")  # the sweep sets these itself


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The grid and the state of its cells


class Cell:
    def __init__(self, algo, script, env, seed, root):
        self.algo, self.script, self.env, self.seed = algo, script, env, seed
        self.dir = os.path.join(root, algo, env.replace("/", "_").replace(os.sep, "_"), f"seed{seed}")
        self.log = os.path.join(self.dir, "sweep.log")
        self.action = "run"       # run, skip, resume, restart
        self.previous = None      # the interrupted run folder, for resume and restart
        self.command = []
        self.note = ""

    @property
    def name(self):
        return f"{self.algo} {self.env} seed{self.seed}"


def run_folder_state(path: str):
    """(finished, last evaluation step or -1) of a run folder written by one of the scripts."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False, -1
    last = -1
    try:
        with open(os.path.join(path, "evaluations.csv")) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        if len(lines) > 1:
            last = int(float(lines[-1].split(",")[0]))
    except (OSError, ValueError):
        pass
    # A resumable state means the run stopped, or was killed, before its end (after its last scheduled evaluation,
    # say, when --total-timesteps is not a multiple of --eval-freq).
    return is_finished(config, last) and not os.path.exists(os.path.join(path, "resume.pt")), last


def is_finished(config: dict, last_step: int) -> bool:
    """The last evaluation the schedule has happened: step >= eval_freq * floor(total / eval_freq)."""
    total = config.get("total_timesteps") if isinstance(config, dict) else None
    if not isinstance(total, (int, float)) or last_step < 0:
        return False
    freq = config.get("eval_freq")
    if isinstance(freq, (int, float)) and 0 < freq <= total:
        return last_step >= (total // freq) * freq
    return last_step >= total


def cell_state(cell_dir: str):
    """('finished', folder) | ('partial', folder) | ('new', None) from the run folders inside a cell."""
    if not os.path.isdir(cell_dir):
        return "new", None
    partial = []
    for name in sorted(os.listdir(cell_dir)):
        path = os.path.join(cell_dir, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            finished, last = run_folder_state(path)
            if finished:
                return "finished", path
            partial.append((last, name, path))
    if partial:
        return "partial", max(partial)[2]
    return "new", None


_resume_support = {}


def supports_resume(python: str, script: str) -> bool:
    """Whether `script --help` mentions --resume (asked once per script)."""
    if script not in _resume_support:
        env = dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore")
        try:
            result = subprocess.run([python, script, "--help"], capture_output=True, text=True, timeout=300, env=env)
            _resume_support[script] = "--resume" in result.stdout + result.stderr
        except (OSError, subprocess.TimeoutExpired):
            _resume_support[script] = False
    return _resume_support[script]


def plan(args, passthrough, threads):
    """The cells of the grid with what each needs and its command."""
    cells = []
    for algo in args.algos:
        script = algo if algo.endswith(".py") else os.path.join(ROOT, f"{algo}.py")
        if not os.path.isfile(script):
            known = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith(".py") and not f.startswith("_"))
            raise UsageError(f"unknown algorithm {algo!r}: no {script} (choose from {', '.join(known)} or pass a .py)")
        name = os.path.basename(script)[:-3]
        for env in args.envs:
            for seed in args.seeds:
                cell = Cell(name, os.path.abspath(script), env, seed, os.path.abspath(args.root))
                state, folder = cell_state(cell.dir)
                cell.command = [args.python, cell.script, "--env", env, "--seed", str(seed), "--run-dir", cell.dir]
                if threads is not None:
                    cell.command += ["--torch-threads", str(threads)]
                cell.command += passthrough
                recorded = read_recorded(cell.dir)
                if state == "finished":
                    cell.action, cell.previous = "skip", folder
                    if recorded is not None and recorded != passthrough:
                        cell.note = (f"finished with other arguments ({shlex.join(recorded) or 'none'}); "
                                     "use a new --root to run these")
                elif state == "partial":
                    cell.previous = folder
                    if supports_resume(args.python, cell.script) and os.path.exists(os.path.join(folder, "resume.pt")):
                        cell.action = "resume"
                        cell.command += ["--resume", folder]
                    else:
                        cell.action = "restart"
                        cell.note = (f"{os.path.basename(cell.script)} cannot resume {folder} (no --resume, or no "
                                     f"resume.pt: killed without saving one): restarting in a fresh run folder "
                                     f"({folder} is left as it is)")
                cells.append(cell)
    return cells


def read_recorded(cell_dir):
    try:
        with open(os.path.join(cell_dir, "sweep_args.json")) as f:
            return json.load(f)["passthrough"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Running one cell (here, or inside a SLURM job)


def child_env(threads):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, str(threads))
    return env


def open_log(spec: dict):
    os.makedirs(spec["dir"], exist_ok=True)
    with open(os.path.join(spec["dir"], "sweep_args.json"), "w") as f:
        json.dump({"passthrough": spec["passthrough"], "command": spec["command"]}, f, indent=2)
    log = open(spec["log"], "a")
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec['action']}: {shlex.join(spec['command'])}\n")
    log.flush()
    return log


def run_cell_job(spec: dict) -> int:
    """The body of one SLURM array task: run the command with its output in the cell's log; the exit status.
    SLURM's warning before the time limit (submitit asks for SIGUSR2 90 s ahead) becomes one SIGINT to the
    run, which then writes its logs and resumable state and exits 130; the next sweep resumes it."""
    log = open_log(spec)
    previous = None
    try:
        try:
            proc = subprocess.Popen(spec["command"], stdout=log, stderr=subprocess.STDOUT,
                                    env=child_env(spec["threads"]), cwd=spec["cwd"])
        except OSError as e:
            log.write(f"cannot start {spec['command'][0]}: {e}\n")
            return 127

        def stop(signum, frame):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

        try:
            previous = signal.signal(signal.SIGUSR2, stop)
        except (ValueError, AttributeError, OSError):  # not the main thread, or no SIGUSR2 on this system
            pass
        try:
            return proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGUSR2, previous)
        log.close()


def spec_of(cell, threads, passthrough):
    return {"command": cell.command, "dir": cell.dir, "log": cell.log, "action": cell.action, "threads": threads,
            "passthrough": passthrough, "cwd": os.getcwd()}


def last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read().splitlines()[-50:]
                     if line.strip() and not line.startswith("===")]
        return lines[-1][:200] if lines else ""
    except OSError:
        return ""


def outcome(cell, status):
    """(ok, message) for a cell whose process ended with this exit status."""
    if status == 130:
        return False, "interrupted (exit status 130): rerun the sweep to resume or restart it"
    if status != 0:
        return False, f"exit status {status}"
    state, _ = cell_state(cell.dir)
    if state != "finished":
        return False, "exit status 0 but its evaluations did not reach the end of the schedule"
    return True, "finished"


def run_local(cells, n, threads, passthrough, report):
    """Runs the cells n at a time; returns {cell: (ok, message)}. Ctrl-C/SIGTERM: one SIGINT to each child."""
    pending, running, results = list(cells), {}, {}
    total, done = len(cells), 0
    try:
        while pending or running:
            while pending and len(running) < n:
                cell = pending.pop(0)
                log = open_log(spec_of(cell, threads, passthrough))
                # A new session: a terminal's Ctrl-C reaches the sweep only, which forwards exactly one SIGINT.
                proc = subprocess.Popen(cell.command, stdout=log, stderr=subprocess.STDOUT, env=child_env(threads),
                                        start_new_session=True)
                running[proc] = (cell, log, time.time())
                report(f"[start] {cell.name}" + (f" ({cell.action} {cell.previous})" if cell.action == "resume" else "")
                       + f": log {cell.log}")
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                cell, log, start = running.pop(proc)
                log.close()
                results[cell] = outcome(cell, proc.returncode)
                done += 1
                ok, message = results[cell]
                report(f"[{done}/{total}] {cell.name}: {'done' if ok else 'FAILED, ' + message} "
                       f"({time.time() - start:.0f} s)")
    except (KeyboardInterrupt, Interrupted):
        report(f"interrupted: stopping {len(running)} running run(s) (they write their logs and resumable state)")
        for proc in running:
            try:
                proc.send_signal(signal.SIGINT)
            except OSError:
                pass
        deadline = time.time() + 120
        for proc, (cell, log, _) in running.items():
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            results[cell] = (False, f"interrupted (exit status {proc.returncode})")
        for cell in pending:
            results[cell] = (False, "not started (interrupted)")
        raise Interrupted(results)
    return results


def parse_time(text: str) -> int:
    """SLURM time ([D-]HH:MM:SS, HH:MM or minutes) in minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", text)
    if text.isdigit():
        return int(text)
    if not match:
        raise UsageError(f"--time {text!r}: use minutes, HH:MM, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = match.groups()
    hours, minutes, seconds = (int(a), int(b), int(c)) if c is not None else (int(a), int(b), 0)
    return max(1, int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0))


def run_slurm(cells, args, threads, passthrough, report):
    """Submits the cells as one job array through submitit; waits unless --no-wait; {cell: (ok, message)}."""
    try:
        import submitit
    except ImportError:
        raise UsageError("--slurm needs submitit: pip install submitit")
    folder = os.path.join(os.path.abspath(args.root), ".submitit")
    cluster = None if args.slurm_executor == "slurm" else args.slurm_executor
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as e:
        raise UsageError(f"cannot submit to SLURM here ({e}); --slurm-executor local tests the path without a cluster")
    params = {"timeout_min": parse_time(args.time), "cpus_per_task": args.cpus, "name": "sweep",
              "slurm_array_parallelism": args.array_parallelism}
    if args.gpus:
        params["gpus_per_node"] = args.gpus
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    extra = {}
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--slurm-extra {item!r}: use KEY=VALUE, e.g. account=myproject")
        extra[key] = value
    if extra:
        params["slurm_additional_parameters"] = extra
    executor.update_parameters(**params)
    if __name__ != "__main__":  # imported (tests): send the job body by value, the nodes need not import it
        try:
            import cloudpickle
            cloudpickle.register_pickle_by_value(sys.modules[__name__])
        except (ImportError, AttributeError, ValueError):
            pass
    jobs = executor.map_array(run_cell_job, [spec_of(cell, threads, passthrough) for cell in cells])
    job_ids = sorted({str(job.job_id).split("_")[0] for job in jobs})
    report(f"submitted {len(jobs)} run(s) as job array {', '.join(job_ids)} ({args.slurm_executor}); "
           f"submitit files in {folder}")
    if args.no_wait:
        report("not waiting: rerun the same command later; finished runs are skipped, interrupted ones resumed")
        return None
    results = {}
    try:
        for k, (cell, job) in enumerate(zip(cells, jobs), 1):
            try:
                status = job.result()
                results[cell] = outcome(cell, status)
            except Exception as e:  # the job itself failed: timeout, preemption, node failure
                message = str(e).strip().splitlines()
                results[cell] = (False, f"job {job.job_id} failed: {message[0] if message else type(e).__name__} "
                                        f"(submitit log {job.paths.stderr})")
            ok, message = results[cell]
            report(f"[{k}/{len(cells)}] {cell.name}: {'done' if ok else 'FAILED, ' + message}")
    except (KeyboardInterrupt, Interrupted):
        report("interrupted while waiting: the jobs keep running on the cluster; rerun the same command later "
               "to see which finished (finished runs are skipped)")
        raise Interrupted(results)
    return results


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv):
    argv = list(argv)
    passthrough = []
    if "--" in argv:
        passthrough = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(
        prog="sweep.py", description="Run algorithms x environments x seeds locally or as a SLURM job array. "
                                     "Arguments after `--` are passed to every run.")
    parser.add_argument("--algos", nargs="+", required=True, help="scripts to run: td3 sac ... (or paths to .py files)")
    parser.add_argument("--envs", nargs="+", required=True, help="gymnasium environment ids")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0), e.g. --seeds $(seq 0 9)")
    parser.add_argument("--root", default=os.path.join("runs", "sweep"),
                        help="sweep folder: <root>/<algo>/<env>/seed<k> per run (default runs/sweep)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--local", type=int, default=1, metavar="N", help="runs at a time on this machine (default 1)")
    mode.add_argument("--slurm", action="store_true", help="submit the grid as one SLURM job array (submitit)")
    parser.add_argument("--dry-run", action="store_true", help="print what each cell would do and its command")
    parser.add_argument("--python", default=sys.executable, help="python that runs the scripts (default: this one)")
    slurm = parser.add_argument_group("SLURM (with --slurm)")
    slurm.add_argument("--partition", default=None, help="SLURM partition")
    slurm.add_argument("--time", default="24:00:00", help="time limit per run: minutes or [D-]HH:MM[:SS] (24:00:00)")
    slurm.add_argument("--cpus", type=int, default=2, help="CPUs per run, also its --torch-threads (2)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per run (0)")
    slurm.add_argument("--mem-gb", type=int, default=None, help="memory per run in GB (cluster default)")
    slurm.add_argument("--array-parallelism", type=int, default=256, help="array tasks running at once (256)")
    slurm.add_argument("--slurm-extra", nargs="*", default=[], metavar="KEY=VALUE",
                       help="more sbatch options, e.g. account=myproject qos=high")
    slurm.add_argument("--slurm-executor", choices=["slurm", "local", "debug"], default="slurm",
                       help="submitit executor: slurm (default), or local/debug to test without a cluster")
    slurm.add_argument("--no-wait", action="store_true", help="submit and exit without waiting for the jobs")
    args = parser.parse_args(argv)
    if args.local < 1:
        raise UsageError(f"--local must be at least 1, got {args.local}")
    if args.slurm:
        parse_time(args.time)
    if args.cpus < 1 or args.gpus < 0:
        raise UsageError("--cpus must be at least 1 and --gpus not negative")
    for item in passthrough:
        if item.split("=")[0] in MANAGED:
            raise UsageError(f"{item.split('=')[0]} is set by the sweep for each run; pass --envs, --seeds or --root")
    if len(set(args.seeds)) != len(args.seeds) or len(set(args.envs)) != len(args.envs):
        raise UsageError("--seeds and --envs must not repeat a value")
    return args, passthrough


def report(message: str):
    """One line of the sweep's output. A reader that has gone (sweep.py --dry-run | head, or a tee ended by Ctrl-C)
    costs nothing: what follows goes to /dev/null, and the sweep goes on looking after its runs."""
    try:
        print(message, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv=None) -> int:
    args, passthrough = parse_args(sys.argv[1:] if argv is None else argv)
    user_threads = any(item.split("=")[0] == "--torch-threads" for item in passthrough)
    threads = None if user_threads else (args.cpus if args.slurm else max(1, cores() // args.local))
    cells = plan(args, passthrough, threads)

    todo = [c for c in cells if c.action != "skip"]
    counts = {a: sum(c.action == a for c in cells) for a in ("run", "resume", "restart", "skip")}
    where = "SLURM job array" if args.slurm else f"{args.local} at a time here"
    report(f"sweep: {len(cells)} runs ({counts['run']} new, {counts['resume']} to resume, {counts['restart']} to "
           f"restart, {counts['skip']} finished); {where}, torch threads {threads or 'as passed'}; root {args.root}")
    for cell in cells:
        if args.dry_run or cell.note or cell.action == "skip":
            label = {"run": "new", "skip": "skip: finished", "resume": "resume", "restart": "restart"}[cell.action]
            line = f"[{label}] {cell.name}"
            if args.dry_run:
                line += f": {shlex.join(cell.command)}"
            elif cell.action == "skip":
                line += f": {cell.previous}"
            report(line + (f"\n    note: {cell.note}" if cell.note else ""))
    if not todo and not args.dry_run:
        report("nothing to run: every run is finished")
    if args.dry_run or not todo:
        return 0

    interrupted = False
    def on_sigterm(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # A shell's `&` starts the sweep with SIGINT ignored, and children would inherit that: restore Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.slurm:
            results = run_slurm(todo, args, threads, passthrough, report)
            if results is None:
                return 0
        else:
            results = run_local(todo, args.local, threads, passthrough, report)
    except Interrupted as e:
        interrupted, results = True, (e.args[0] if e.args else {})
    finally:
        signal.signal(signal.SIGTERM, previous)

    failed = [(cell, results[cell][1]) for cell in todo if cell in results and not results[cell][0]]
    ok = sum(1 for cell in todo if cell in results and results[cell][0])
    report(f"\nsummary: {ok} finished now, {counts['skip']} already finished, {len(failed)} failed"
           + (", interrupted" if interrupted else "") + f" (of {len(cells)})")
    for cell, message in failed:
        line = last_line(cell.log)
        where = f"; log {cell.log}" if os.path.exists(cell.log) else ""
        report(f"  FAILED {cell.name}: {message}{where}" + (f"\n    last line: {line}" if line else ""))
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as e:
        print(f"sweep.py: error: {e}", file=sys.stderr)
        sys.exit(2)
