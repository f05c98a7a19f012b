/**
 * spillway/spark: Apache Spark for Kubernetes, assembled from what Maven Central and Debian serve, in layers that
 * change at different rates:
 *
 *   busybox  the shared base (hack/images/base.ts): sh and the usual applets for `kubectl exec`
 *   jre      Debian's openjdk-17-jre-headless at /usr/lib/jvm/java-17-openjdk-amd64 (JAVA_HOME) with the shared
 *            libraries its native code links, resolved inside Debian packages, and Debian's bash (the scripts
 *            below need arrays to pass arguments through untouched)
 *   jars     /opt/spark/jars: spark-core, spark-sql and spark-kubernetes with their runtime closure, resolved by
 *            `mvn dependency:copy-dependencies` from hack/images/spark/pom.xml (spark.version there is the tag)
 *   scripts  /opt/spark/bin/spark-submit, /opt/entrypoint.sh, the SparkPi example jar, the spark user (185)
 *
 * Spark's bin/ scripts, its Docker entrypoint and its examples jar are not on Maven Central: the scripts here are
 * ours, written for the arguments and environment Spark's Kubernetes backend gives its pods (spark-kubernetes's
 * Constants: SPARK_DRIVER_BIND_ADDRESS, SPARK_EXECUTOR_*, SPARK_JAVA_OPT_<n>), and SparkPi is
 * hack/images/spark/SparkPi.java, compiled here against the jars.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { withParents, type TarEntry } from '../oci.ts';
import { accountEntries, BASE_GROUPS, BASE_USERS, busyboxLayer, checkTag } from './base.ts';
import {
  copyrightEntries,
  debianPackage,
  debianPackages,
  debianPrograms,
  entriesFromTree,
  fileEntry,
  libraryClosure,
  libraryDependencies,
  LIBRARY_DIRS,
  neededLibraries,
  run,
  treeEntries,
  type DebianTree,
} from './debian.ts';
import { PATH_ENV, type BuildContext, type BuiltImage } from './recipe.ts';
import { textEntry, type SizedLayer } from './store.ts';

/** The uid and gid upstream's apache/spark image runs as. */
export const SPARK_UID = 185;
export const SPARK_HOME = '/opt/spark';
const JRE_PACKAGE = 'openjdk-17-jre-headless';
export const JAVA_HOME = '/usr/lib/jvm/java-17-openjdk-amd64';
/** Where SparkPi lands in the image: the application resource a spark-submit names as `local://` + this. */
export const EXAMPLES_JAR = `${SPARK_HOME}/examples/jars/spark-examples.jar`;
export const SPARK_PI_CLASS = 'dev.spillway.examples.SparkPi';

/**
 * /opt/spark/bin/spark-submit. Spark's launcher (org.apache.spark.launcher.Main, in the spark-launcher jar) works
 * out the JVM command as Spark's own script has it do: the heap from --driver-memory or spark.driver.memory in a
 * properties file, spark.driver.extraJavaOptions, the --add-opens flags Spark needs on Java 17. It prints that
 * command NUL-separated (after its messages, if any), which needs bash's `read -d ''` to take apart without
 * re-splitting arguments.
 */
export const SPARK_SUBMIT = `#!/bin/bash
# spark-submit of spillway/spark (hack/images/spark.ts): Spark's launcher prints the JVM command, we run it.
set -euo pipefail
export SPARK_HOME="\${SPARK_HOME:-${SPARK_HOME}}"
export SPARK_CONF_DIR="\${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
# The launcher looks for build folders to learn the Scala version unless told; a distribution has none.
export SPARK_SCALA_VERSION="\${SPARK_SCALA_VERSION:-2.13}"
# The launcher prints any messages for the user, a NUL and a newline, then the command NUL-separated; the exit
# status is appended here. parts[0] holds the messages, parts[1] the newline and the java binary.
parts=()
while IFS= read -r -d '' part; do
  parts+=("$part")
done < <("$JAVA_HOME/bin/java" -Xmx128m -cp "$SPARK_HOME/jars/*" org.apache.spark.launcher.Main \\
  org.apache.spark.deploy.SparkSubmit "$@"; printf '%d\\0' $?)
status="\${parts[-1]}"
[ "$status" = 0 ] || exit "$status"
[ -z "\${parts[0]}" ] || printf '%s\\n' "\${parts[0]%$'\\n'}"
cmd=("\${parts[@]:1:\${#parts[@]}-2}")
cmd[0]="\${cmd[0]#$'\\n'}"
exec "\${cmd[@]}"
`;

/**
 * /opt/entrypoint.sh: what a pod Spark's Kubernetes backend creates runs. The driver pod's argument list is
 * `driver --properties-file <file> --class <main> <resource> <args...>`: a client-mode spark-submit inside the
 * pod, bound to the pod's address. An executor pod's is `executor`, with the rest in the environment; its JVM
 * options come as SPARK_JAVA_OPT_0, _1, ... in order. Any other command runs as given (`spark-submit ...`, `sh`).
 */
export const ENTRYPOINT = `#!/bin/bash
# Entrypoint of spillway/spark (hack/images/spark.ts) for Spark's Kubernetes driver and executor pods.
set -euo pipefail
export SPARK_HOME="\${SPARK_HOME:-${SPARK_HOME}}"
export SPARK_CONF_DIR="\${SPARK_CONF_DIR:-$SPARK_HOME/conf}"

need() {
  for var in "$@"; do
    if [ -z "\${!var:-}" ]; then
      echo "entrypoint: $var is not set; Spark's Kubernetes backend sets it on the pods it creates" >&2
      exit 64
    fi
  done
}

case "\${1:-}" in
  driver)
    shift
    need SPARK_DRIVER_BIND_ADDRESS
    exec "$SPARK_HOME/bin/spark-submit" \\
      --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS" \\
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS" \\
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    need SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_EXECUTOR_MEMORY \\
      SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP SPARK_RESOURCE_PROFILE_ID
    java_opts=()
    for ((i = 0; ; i++)); do
      var="SPARK_JAVA_OPT_$i"
      [ -n "\${!var+set}" ] || break
      java_opts+=("\${!var}")
    done
    classpath="$SPARK_CONF_DIR:$SPARK_HOME/jars/*"
    classpath+="\${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}\${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"
    exec "$JAVA_HOME/bin/java" "\${java_opts[@]}" \\
      "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY" -cp "$classpath" \\
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \\
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \\
      --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \\
      --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" "$@"
    ;;
  '')
    echo "entrypoint: give a command, or driver/executor as Spark's Kubernetes backend does" >&2
    exit 64
    ;;
  *)
    exec "$@"
    ;;
esac
`;

/** A content hash of some files and strings, to key cached build outputs. */
function contentKey(parts: Array<string | Buffer>): string {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/**
 * The jars of hack/images/spark/pom.xml, copied by Maven into a folder keyed by the pom: Maven's own repository
 * is dist/images/.cache/maven, so a rebuild after a pom change downloads only what is new.
 */
export function sparkJars(ctx: BuildContext): { dir: string; version: string; jars: string[] } {
  const pom = join(ctx.root, 'hack/images/spark/pom.xml');
  const text = readFileSync(pom, 'utf8');
  const version = /<spark\.version>([^<]+)<\/spark\.version>/.exec(text)?.[1];
  if (!version) throw new Error(`${pom} has no <spark.version>`);
  const dir = join(ctx.cacheDir, `spark-jars-${contentKey([text])}`);
  if (!existsSync(join(dir, '.complete'))) {
    ctx.log(`mvn dependency:copy-dependencies (hack/images/spark/pom.xml, Spark ${version})`);
    rmSync(dir, { recursive: true, force: true });
    try {
      run('mvn', [
        '-B',
        '-q',
        '-f',
        pom,
        `-Dmaven.repo.local=${join(ctx.cacheDir, 'maven')}`,
        'dependency:copy-dependencies',
        `-DoutputDirectory=${join(dir, 'jars')}`,
        '-DincludeScope=runtime',
      ]);
    } catch (err) {
      throw new Error(
        'cannot resolve the Spark jars from Maven Central: install Maven (`apt-get install maven`) and check that it reaches Central',
        { cause: err },
      );
    }
    writeFileSync(join(dir, '.complete'), '');
  }
  const jars = readdirSync(join(dir, 'jars'))
    .filter((f) => f.endsWith('.jar'))
    .sort();
  return { dir: join(dir, 'jars'), version, jars };
}

/**
 * One Java source file compiled (for Java 17, against the jars in `classpath` if given) into a jar with fixed
 * timestamps, cached by the source, the compiler and the classpath's jar names.
 */
export function compileJar(ctx: BuildContext, name: string, source: string, classpath?: string): string {
  let javac: string;
  try {
    javac = run('javac', ['-version']).trim();
  } catch (err) {
    throw new Error(
      'javac is missing: install a JDK 17 or later (`apt-get install openjdk-17-jdk-headless`)',
      {
        cause: err,
      },
    );
  }
  const jars = classpath ? readdirSync(classpath).sort() : [];
  const key = contentKey([readFileSync(source), javac, ...jars]);
  const out = join(ctx.cacheDir, `${name}-${key}.jar`);
  if (!existsSync(out)) {
    ctx.log(`javac ${relative(ctx.root, source)} (${javac})`);
    const classes = `${out}.classes`;
    rmSync(classes, { recursive: true, force: true });
    run('javac', ['--release', '17', ...(classpath ? ['-cp', `${classpath}/*`] : []), '-d', classes, source]);
    run('jar', ['--create', '--date=2026-01-01T00:00:00Z', '--file', `${out}.tmp`, '-C', classes, '.']);
    rmSync(classes, { recursive: true, force: true });
    renameSync(`${out}.tmp`, out);
  }
  return out;
}

/**
 * The JRE's files and the shared libraries its native code links, from Debian. Its own libraries find each other
 * (libjvm.so in lib/server) through the JVM, not the loader's path, so they are searched in the JRE's folders and
 * only what lies outside it is resolved in the library packages.
 */
function jreEntries(ctx: BuildContext): { entries: TarEntry[]; packages: DebianTree[] } {
  const jre = debianPackage(JRE_PACKAGE, ctx.debs);
  const libs = debianPackages(libraryDependencies(JRE_PACKAGE, ctx.debs), ctx.debs);
  const home = join(jre.root, JAVA_HOME.slice(1));
  const entries = new Map<string, TarEntry>();
  for (const e of treeEntries(home, JAVA_HOME.slice(1))) entries.set(e.path, e);
  for (const e of treeEntries(join(jre.root, 'etc/java-17-openjdk'), 'etc/java-17-openjdk'))
    entries.set(e.path, e);
  // cacerts is a link to ca-certificates-java's keystore, which that package's maintainer script generates: none
  // here. Spark's Kubernetes client trusts the cluster's CA from the service account or kubeconfig instead.
  entries.delete(`${JAVA_HOME.slice(1)}/lib/security/cacerts`);

  const natives = [join(home, 'bin/java'), ...elfLibraries(join(home, 'lib'))];
  const searchPath = [
    join(home, 'lib'),
    join(home, 'lib/server'),
    ...libs.flatMap((t) => LIBRARY_DIRS.map((d) => join(t.root, d))).filter(existsSync),
  ];
  const outside = new Set<string>();
  for (const binary of natives)
    for (const lib of neededLibraries(binary, searchPath))
      if (!lib.hostPath.startsWith(home)) outside.add(lib.hostPath);
  const fromPackages = [...outside].filter((p) => libs.some((t) => p.startsWith(`${t.root}/`)));
  for (const [path, entry] of libraryClosure(fromPackages, libs)) entries.set(path, entry);
  for (const hostPath of fromPackages) {
    const tree = libs.find((t) => hostPath.startsWith(`${t.root}/`))!;
    entriesFromTree(tree.root, relative(tree.root, hostPath), entries);
  }
  const used = [jre, ...libs.filter((t) => [...entries.keys()].some((p) => holds(t, p)))];
  copyrightEntries(used, ctx.debs, entries);
  entries.set('usr/bin/java', {
    path: 'usr/bin/java',
    type: 'symlink',
    mode: 0o777,
    target: `${JAVA_HOME}/bin/java`,
  });
  return { entries: [...entries.values()], packages: used };
}

/** The shared objects under a JRE's lib/ (lib/server/libjvm.so included). */
function elfLibraries(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return elfLibraries(path);
    return e.isFile() && e.name.endsWith('.so') ? [path] : [];
  });
}

/** Whether a layer path came from this package (a file of that name is in its tree). */
function holds(tree: DebianTree, path: string): boolean {
  return existsSync(join(tree.root, path));
}

/** The JRE layer (with bash), shared by every Java image here; and the versions it holds. */
export async function jreLayer(ctx: BuildContext): Promise<{ layer: SizedLayer; sources: string }> {
  const jre = jreEntries(ctx);
  const bash = debianPrograms([{ pkg: 'bash', paths: ['bin/bash'] }], ctx.debs);
  const sources = [...jre.packages.slice(0, 1), ...bash.packages.slice(0, 1)]
    .map((t) => `${t.pkg} ${t.version}`)
    .join(', ');
  const layer = await ctx.layers.layer(
    // Both need glibc: one entry per path.
    withParents([...new Map([...jre.entries, ...bash.entries].map((e) => [e.path, e])).values()]),
    `jre: Debian ${sources} and the libraries they link`,
  );
  return { layer, sources };
}

/** PATH_ENV with `dirs` first. */
export function pathWith(...dirs: string[]): string {
  return `PATH=${[...dirs, PATH_ENV.slice('PATH='.length)].join(':')}`;
}

export async function spark(ctx: BuildContext): Promise<BuiltImage> {
  const jars = sparkJars(ctx);
  checkTag('spark', jars.version, 'spark.version in hack/images/spark/pom.xml');
  const examples = compileJar(
    ctx,
    'spark-examples',
    join(ctx.root, 'hack/images/spark/SparkPi.java'),
    jars.dir,
  );
  const base = await busyboxLayer(ctx);
  const jre = await jreLayer(ctx);
  const jarLayer = await ctx.layers.layer(
    withParents(jars.jars.map((j) => fileEntry(`${SPARK_HOME.slice(1)}/jars/${j}`, join(jars.dir, j)))),
    `jars: Spark ${jars.version} (${jars.jars.length} jars from hack/images/spark/pom.xml)`,
  );
  const home = SPARK_HOME.slice(1);
  const scripts: TarEntry[] = [
    textEntry(`${home}/bin/spark-submit`, SPARK_SUBMIT, 0o755),
    textEntry('opt/entrypoint.sh', ENTRYPOINT, 0o755),
    fileEntry(EXAMPLES_JAR.slice(1), examples),
    { path: `${home}/conf`, type: 'dir', mode: 0o755 },
    // Spark's default work directory and local dirs must be writable by the spark user.
    { path: `${home}/work-dir`, type: 'dir', mode: 0o775, uid: SPARK_UID, gid: SPARK_UID },
    { path: 'home/spark', type: 'dir', mode: 0o755, uid: SPARK_UID, gid: SPARK_UID },
    ...accountEntries(
      [
        ...BASE_USERS,
        { name: 'spark', uid: SPARK_UID, gid: SPARK_UID, home: '/home/spark', shell: '/bin/bash' },
      ],
      [...BASE_GROUPS, { name: 'spark', gid: SPARK_UID }],
    ),
  ];
  const scriptLayer = await ctx.layers.layer(
    withParents(scripts),
    'scripts: spark-submit, entrypoint.sh, SparkPi (hack/images/spark.ts)',
  );
  return {
    layers: [base.layer, jre.layer, jarLayer, scriptLayer],
    config: {
      User: `${SPARK_UID}:${SPARK_UID}`,
      Env: [
        `JAVA_HOME=${JAVA_HOME}`,
        `SPARK_HOME=${SPARK_HOME}`,
        pathWith(`${SPARK_HOME}/bin`, `${JAVA_HOME}/bin`),
      ],
      Entrypoint: ['/opt/entrypoint.sh'],
      WorkingDir: `${SPARK_HOME}/work-dir`,
    },
    inputs: `busybox-static ${base.version}, ${jre.sources}, Spark ${jars.version} (${jars.jars.length} jars), SparkPi ${contentKey([readFileSync(examples)])}`,
  };
}
