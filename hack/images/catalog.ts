/**
 * The images `make images` builds and pushes to the local cluster's loopback registry, and the names by which
 * the examples, the demo, the tests and containerd's sandbox (pause) image refer to them. One list, so that a
 * name is spelled once: `imageRef('busybox')` → `localhost:5000/spillway/busybox:1.35.0`.
 *
 * Tags are the upstream versions of what the image carries (Debian's package version for busybox and nginx,
 * agnhost's own VERSION at the pinned Kubernetes version, CoreDNS's pin), so a tag changes when its content does.
 */

/** Where `make cluster-up` serves the registry: containerd treats `localhost` registries as plain HTTP. */
export const DEFAULT_REGISTRY = 'localhost:5000';

/** Image name (repository under the registry, and tag) by short name. */
export const IMAGES = {
  /** The pod sandbox's infra container: a static binary that sleeps until signalled and reaps zombies. */
  pause: 'spillway/pause:3.10',
  /**
   * Debian's busybox-static with its applets linked in /bin: `sh`, `wget`, `nc`, `sleep`... Its `wget -T <seconds>`
   * crashes (SIGSEGV, also on the host: the Debian build's bug); use `timeout N wget ...` instead.
   */
  busybox: 'spillway/busybox:1.35.0',
  /** Debian's nginx (bookworm's nginx-light is a metapackage over it) serving /usr/share/nginx/html on :80, as upstream's. */
  nginx: 'spillway/nginx:1.22.1',
  /** Kubernetes' test image (k8s.io/kubernetes/test/images/agnhost), used by conformance tests. */
  agnhost: 'spillway/agnhost:2.63.0',
  /** The pinned CoreDNS, running `/coredns -conf /etc/coredns/Corefile` as upstream's image does. */
  coredns: 'spillway/coredns:1.14.7',
  /** The pinned metrics-server (the resource metrics API behind `kubectl top` and the HPA), as upstream's image. */
  'metrics-server': 'spillway/metrics-server:0.8.0',
  /**
   * Apache Spark (core, SQL, the Kubernetes backend; hack/images/spark/pom.xml) on Debian's OpenJDK 17, with our
   * spark-submit and a driver/executor entrypoint; SparkPi at /opt/spark/examples/jars/spark-examples.jar.
   */
  spark: 'spillway/spark:4.2.0',
  /**
   * The fake ECI endpoint (test/support/fake-eci/main.ts) the chart runs as its fakeEci Service; tagged with the
   * chart's appVersion.
   */
  'fake-eci': 'spillway/fake-eci:0.1.0',
  /**
   * A stand-in for a Jenkins inbound agent (and, with the argument `controller`, its controller) on the spark
   * image's JRE layer: connects to JENKINS_URL as the kubernetes plugin's agent pods do. Not Jenkins.
   */
  'jenkins-agent': 'spillway/jenkins-agent:0.1.0',
} as const;

export type ImageName = keyof typeof IMAGES;

/** The full reference of an image in a registry (default: the local cluster's). */
export function imageRef(name: ImageName, registry: string = DEFAULT_REGISTRY): string {
  return `${registry}/${IMAGES[name]}`;
}
