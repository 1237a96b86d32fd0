// run_cli.cc: see run_cli.hh.
#include "run_cli.hh"

#include "run/env.hh"
#include "run/join.hh"
#include "util/error.hh"
#include "util/fd.hh"

namespace ch::cli {

namespace {

const Spec spec = {
    "ch-run",
    "[OPTION...] IMAGE -- COMMAND [ARG...]",
    "Run COMMAND in a container made from IMAGE: a directory, a SquashFS file, or the name of an "
    "image in storage. Runs as the invoking user, with unprivileged user and mount namespaces.",
    {
        {"bind", 'b', Arg::required, true, "SRC[:DST]", "bind SRC at guest DST (default: DST=SRC)"},
        {"cd", 'c', Arg::required, false, "DIR", "initial working directory in container"},
        {"env-no-expand", 0, Arg::none, false, "", "don't expand $ in --set-env input"},
        {"feature", 0, Arg::required, false, "FEAT",
         "exit successfully if FEAT is available (extglob, overlayfs, seccomp, squash, "
         "tmpfs-xattrs)"},
        {"gid", 'g', Arg::required, false, "GID", "run as GID within container"},
        {"help", '?', Arg::none, false, "", "give this help list"},
        {"home", 0, Arg::none, false, "", "bind $HOME at /home/$USER (adds -W if needed)"},
        {"join", 'j', Arg::none, false, "", "use the same container as peer ch-run processes"},
        {"join-ct", 0, Arg::required, false, "N",
         "number of join peers (implies --join; default: this node's task count from Slurm or "
         "Open MPI)"},
        {"join-pid", 0, Arg::required, false, "PID",
         "join the namespaces of PID, a running container of this user"},
        {"join-tag", 0, Arg::required, false, "TAG",
         "label for the peer group (implies --join; default: Slurm job and step)"},
        {"join-timeout", 0, Arg::required, false, "SECONDS",
         "give up waiting for join peers after SECONDS (default: 30)"},
        {"inject", 0, Arg::optional, false, "SET,...",
         "bind the site's injection sets (all without SET) into the container, libraries in a "
         "generated ld.so.cache (adds -W)"},
        {"mount", 'm', Arg::required, false, "DIR",
         "SquashFS mount point (DIR must exist; default: STORAGE/mnt, created if needed)"},
        {"no-passwd", 0, Arg::none, false, "", "don't bind user and group databases"},
        {"private-tmp", 't', Arg::none, false, "", "use container-private /tmp"},
        {"quiet", 'q', Arg::none, true, "",
         "print less output (-q: command's stdout to /dev/null; -qqq: stderr too)"},
        {"set-env", 0, Arg::optional, true, "ARG",
         "set environment variables: KEY=VALUE, a host FILE, or /ch/environment in the image"},
        {"set-env0", 0, Arg::optional, true, "ARG", "like --set-env, but NUL-separated"},
        {"storage", 's', Arg::required, false, "DIR", "set storage directory"},
        {"uid", 'u', Arg::required, false, "UID", "run as UID within container"},
        {"unsafe", 0, Arg::none, false, "", "do unsafe things (internal use only)", true},
        {"unset-env", 0, Arg::required, true, "GLOB",
         "unset environment variable(s) matching GLOB"},
        {"usage", 0, Arg::none, false, "", "give a short usage message"},
        {"verbose", 'v', Arg::none, true, "", "be more verbose (can be repeated)"},
        {"version", 'V', Arg::none, false, "", "print version and exit"},
        {"write", 'w', Arg::none, false, "", "mount image read-write (avoid)"},
        {"write-fake", 'W', Arg::optional, false, "SIZE",
         "overlay a writable tmpfs of SIZE (default 12%) on the image"},
    },
    true,
};

unsigned parse_id(const std::string& opt, const std::string& v) {
    unsigned long long n = 0;
    if (!parse_uint(v, 4294967294ULL, n)) // (uid_t)-1 means "no change" to the kernel
        throw UsageError(cat("bad ", opt, ": ", printable(v), " (must be a non-negative integer)"));
    return static_cast<unsigned>(n);
}

// tmpfs size: digits with an optional k/m/g/% suffix; anything else (say a
// comma) could smuggle extra mount options. Zero is refused: to tmpfs,
// size=0 means no limit at all.
void check_size(const std::string& v) {
    std::size_t i = 0;
    bool nonzero = false;
    for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; i++)
        nonzero = nonzero || v[i] != '0';
    const bool ok =
        i > 0 && (i == v.size() ||
                  (i + 1 == v.size() && std::string("kKmMgG%").find(v[i]) != std::string::npos));
    if (!ok)
        throw UsageError(cat("bad --write-fake size: ", printable(v), " (e.g. 4G, 512m, 25%)"));
    if (!nonzero)
        throw UsageError(cat("bad --write-fake size: ", printable(v),
                             " (must be more than zero; tmpfs takes 0 for no limit)"));
}

run::EnvDelta set_env_delta(const std::optional<std::string>& arg, char sep) {
    run::EnvDelta d;
    if (!arg) {
        d.kind = run::EnvDelta::Kind::image_file;
        d.separator = sep;
    } else if (arg->find('=') != std::string::npos) {
        d.vars.push_back(run::parse_env_assignment(*arg, "--set-env"));
    } else {
        std::string text;
        try {
            text = read_file(*arg);
        } catch (Error& e) {
            e.add_context("--set-env");
            throw;
        }
        d.vars = run::parse_env_text(text, sep, *arg);
    }
    return d;
}

} // namespace

const Spec& run_spec() {
    return spec;
}

run::RunOptions to_run_options(const Parsed& p) {
    run::RunOptions o;
    for (const auto& occ : p.in_order) {
        const std::string& n = occ.name;
        const std::string v = occ.value.value_or("");
        if (n == "bind") {
            const std::size_t colon = v.find(':');
            const std::string src = v.substr(0, colon);
            const std::string dst = colon == std::string::npos ? src : v.substr(colon + 1);
            if (src.empty())
                throw UsageError(cat("--bind: no source in ", printable(v)));
            if (dst.empty())
                throw UsageError(cat("--bind: no destination in ", printable(v)));
            o.bind.push_back({src, dst});
        } else if (n == "set-env" || n == "set-env0") {
            o.env.push_back(set_env_delta(occ.value, n == "set-env" ? '\n' : '\0'));
        } else if (n == "unset-env") {
            run::EnvDelta d;
            d.kind = run::EnvDelta::Kind::unset;
            d.glob = v;
            o.env.push_back(d);
        }
    }
    o.cd = p.value("cd");
    o.env_no_expand = p.has("env-no-expand");
    if (auto g = p.value("gid"))
        o.gid = parse_id("--gid", *g);
    if (auto u = p.value("uid"))
        o.uid = parse_id("--uid", *u);
    o.home = p.has("home");
    if (p.has("inject")) {
        o.inject.emplace();
        for (const auto& s : split(p.value("inject").value_or(""), ','))
            if (!s.empty())
                o.inject->push_back(s);
    }
    if (auto m = p.value("mount"))
        o.mount = *m;
    o.join = p.has("join") || p.has("join-ct") || p.has("join-tag");
    if (auto c = p.value("join-ct")) {
        unsigned long long n = 0;
        if (!parse_uint(*c, 1u << 20, n) || n == 0)
            throw UsageError(
                cat("bad --join-ct: ", printable(*c), " (must be a positive integer)"));
        o.join_ct = static_cast<unsigned>(n);
    }
    if (auto t = p.value("join-tag")) {
        if (t->empty())
            throw UsageError("--join-tag: empty tag");
        o.join_tag = *t;
    }
    if (auto t = p.value("join-timeout")) {
        o.join_timeout = run::parse_join_timeout(*t);
        if (!o.join_timeout)
            throw UsageError(cat("bad --join-timeout: ", printable(*t),
                                 " (seconds, more than 0 and at most 86400, e.g. 30 or 2.5)"));
    }
    if (auto j = p.value("join-pid")) {
        unsigned long long n = 0;
        if (!parse_uint(*j, 4194304, n) || n == 0)
            throw UsageError(cat("bad --join-pid: ", printable(*j), " (must be a process id)"));
        o.join_pid = static_cast<pid_t>(n);
        if (o.join)
            throw UsageError("--join-pid and --join are incompatible");
    }
    o.no_passwd = p.has("no-passwd");
    o.private_tmp = p.has("private-tmp");
    o.quiet = p.count("quiet");
    o.verbose = p.count("verbose");
    if (auto s = p.value("storage"))
        o.storage = *s;
    o.unsafe = p.has("unsafe");
    o.write = p.has("write");
    if (p.has("write-fake")) {
        o.write_fake = p.value("write-fake").value_or(run::write_fake_default_size);
        check_size(*o.write_fake);
    }
    if (o.quiet > 3 || o.verbose > 3)
        throw UsageError("-q and -v can each be given at most 3 times");
    if (o.quiet > 0 && o.verbose > 0)
        throw UsageError("-q and -v are incompatible");

    if (p.positional.empty())
        throw UsageError("no IMAGE given");
    o.image_ref = p.positional[0];
    o.command.assign(p.positional.begin() + 1, p.positional.end());
    o.command.insert(o.command.end(), p.command.begin(), p.command.end());
    if (o.command.empty())
        throw UsageError("no COMMAND given");
    return o;
}

} // namespace ch::cli
