/**
 * spillway/spark (hack/images/spark.ts) runs Spark: SparkPi through the image's own spark-submit and entrypoint,
 * as the spark user (185), from the image's layers unpacked into a root and entered with chroot in private mount,
 * PID, UTS and network namespaces (loopback only, a hostname and /etc/hosts as a runtime gives a pod). The
 * driver and executor pods Spark's Kubernetes backend creates run the same entrypoint on real nodes (the e2e).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages, type BuiltImageFile } from '../../hack/build-images.ts';
import { EXAMPLES_JAR, SPARK_PI_CLASS } from '../../hack/images/spark.ts';

/** The image's root filesystem: its layers unpacked in order into `into`. */
function unpack(image: BuiltImageFile, into: string): string {
  const manifest = JSON.parse(
    image.layout.blobs.find((b) => b.digest === image.layout.manifestDigest)!.data.toString(),
  ) as { layers: Array<{ digest: string }> };
  mkdirSync(into, { recursive: true });
  for (const layer of manifest.layers) {
    const blob = image.layout.blobs.find((b) => b.digest === layer.digest)!;
    execFileSync('tar', ['-xzf', '-', '-C', into, '--numeric-owner'], {
      input: blob.data,
      maxBuffer: 1 << 30,
    });
  }
  return into;
}

describe('spillway/spark', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-spark-'));
  let image: BuiltImageFile;
  let root: string;

  /**
   * Runs `args` through the image's entrypoint as 185:185 in /opt/spark/work-dir with the image's environment,
   * in fresh namespaces; returns stdout, stderr and the exit status.
   */
  const inImage = (args: string[], env: Record<string, string> = {}) => {
    const config = JSON.parse(
      image.layout.blobs.find((b) => b.digest === image.layout.configDigest)!.data.toString(),
    ) as { config: { Env: string[]; Entrypoint: string[]; WorkingDir: string; User: string } };
    const { Env, Entrypoint, WorkingDir, User } = config.config;
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const environment = [...Env, 'HOME=/home/spark', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const script = [
      'set -e',
      'ip link set lo up',
      'hostname spark-test',
      `mount --rbind /dev ${root}/dev`,
      `mount -t proc proc ${root}/proc`,
      `cd ${root}`,
      // Through a pipe, as a runtime's stdio are pipes or FIFOs rather than Node's sockets.
      `env -i ${environment.map(quote).join(' ')} /usr/sbin/chroot --userspec=${User} ${root} ` +
        `sh -c ${quote(`cd ${WorkingDir} && exec "$@"`)} sh ${[...Entrypoint, ...args].map(quote).join(' ')} 2>&1 | cat`,
      'exit "${PIPESTATUS[0]}"',
    ].join('\n');
    return spawnSync('unshare', ['--mount', '--net', '--pid', '--uts', '--fork', 'bash', '-c', script], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
  };

  beforeAll(async () => {
    image = (await buildImages({ only: ['spark'] }))[0]!;
    root = unpack(image, join(dir, 'root'));
    for (const d of ['dev', 'proc']) mkdirSync(join(root, d), { recursive: true });
    // A runtime writes the pod's /etc/hosts: its hostname and localhost.
    writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost\n127.0.0.1 spark-test\n');
  }, 600_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs SparkPi in local mode through its spark-submit, as the spark user', () => {
    const run = inImage([
      'spark-submit',
      '--master',
      'local[2]',
      '--driver-memory',
      '512m',
      '--class',
      SPARK_PI_CLASS,
      `local://${EXAMPLES_JAR}`,
      '20',
    ]);
    expect(run.stdout).toMatch(/^Pi is roughly 3\.1\d*$/m);
    expect(run.stdout).toContain('Spark version 4.2.0');
    expect(run.status).toBe(0);
  });

  it("runs a driver as Spark's Kubernetes backend starts one: driver --properties-file <file> --class <main>", () => {
    // What spark-submit in cluster mode mounts at /opt/spark/conf/spark.properties, with a local master so that
    // the driver runs its tasks itself instead of asking the API server for executors.
    writeFileSync(
      join(root, 'opt/spark/work-dir/spark.properties'),
      'spark.master=local[2]\nspark.app.name=spark-pi\nspark.driver.memory=512m\nspark.submit.deployMode=cluster\n',
    );
    const run = inImage(
      [
        'driver',
        '--properties-file',
        '/opt/spark/work-dir/spark.properties',
        '--class',
        SPARK_PI_CLASS,
        `local://${EXAMPLES_JAR}`,
        '4',
      ],
      { SPARK_DRIVER_BIND_ADDRESS: '127.0.0.1' },
    );
    expect(run.stdout).toMatch(/^Pi is roughly 3\.1\d*$/m);
    expect(run.status).toBe(0);
  });

  it('has the Debian JRE 17 on PATH and runs as the spark user', () => {
    const run = inImage(['sh', '-c', 'java -version 2>&1; id']);
    expect(run.stdout).toMatch(/openjdk version "17\./);
    expect(run.stdout).toContain('uid=185(spark) gid=185(spark)');
  });

  it('starts an executor from what Spark puts in its pod: the executor backend dials SPARK_DRIVER_URL', () => {
    // No driver listens here, so the executor exits after its connection is refused, as it would without one.
    const run = inImage(['executor'], {
      SPARK_DRIVER_URL: 'spark://CoarseGrainedScheduler@127.0.0.1:7078',
      SPARK_EXECUTOR_ID: '1',
      SPARK_EXECUTOR_CORES: '1',
      SPARK_EXECUTOR_MEMORY: '512m',
      SPARK_APPLICATION_ID: 'spark-0123',
      SPARK_EXECUTOR_POD_IP: '127.0.0.1',
      SPARK_EXECUTOR_POD_NAME: 'spark-pi-exec-1',
      SPARK_RESOURCE_PROFILE_ID: '0',
      SPARK_JAVA_OPT_0: '-Dspark.driver.port=7078',
      SPARK_JAVA_OPT_1: '-Dspark.app.name=spark-pi',
    });
    expect(run.stdout).toContain('INFO KubernetesExecutorBackend: Started daemon');
    expect(run.stdout).toContain('Failed to connect to /127.0.0.1:7078');
    expect(run.status).not.toBe(0);
  });

  it('says which variable is missing when an executor is started without what Spark sets', () => {
    const run = inImage(['executor'], { SPARK_DRIVER_URL: 'spark://CoarseGrainedScheduler@driver:7078' });
    expect(run.status).toBe(64);
    expect(run.stdout).toContain(
      "entrypoint: SPARK_EXECUTOR_ID is not set; Spark's Kubernetes backend sets it on the pods it creates",
    );
  });
});
