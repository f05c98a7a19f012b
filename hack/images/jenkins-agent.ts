/**
 * spillway/jenkins-agent: an agent-shaped image for the Jenkins example's pods (examples/jenkins), and NOT Jenkins:
 * a real inbound agent (remoting.jar) and controller are not published to Maven Central. It has what upstream's
 * jenkins/inbound-agent has around the agent: a JRE (the spark image's layer, Debian's OpenJDK 17, so the two share
 * it), a shell, the user jenkins (1000) with its work directory /home/jenkins/agent. The agent is
 * hack/images/jenkins-agent/AgentStandIn.java: it reads the environment the kubernetes plugin gives the agent
 * container (JENKINS_URL, JENKINS_AGENT_NAME, JENKINS_SECRET, JENKINS_TUNNEL), finds the controller's agent port
 * the way an inbound agent does (JENKINS_URL/tcpSlaveAgentListener/), connects and prints what it gets.
 * `jenkins-agent controller` runs the matching controller stand-in, so a demo needs no Jenkins.
 */
import { join } from 'node:path';
import { withParents, type TarEntry } from '../oci.ts';
import { accountEntries, BASE_GROUPS, BASE_USERS, busyboxLayer, checkTag } from './base.ts';
import { fileEntry } from './debian.ts';
import { type BuildContext, type BuiltImage } from './recipe.ts';
import { compileJar, JAVA_HOME, jreLayer, pathWith } from './spark.ts';
import { textEntry } from './store.ts';

/** The stand-in's version, the image's tag: bump it (and the catalog's tag) when AgentStandIn.java changes. */
export const STAND_IN_VERSION = '0.1.0';
const JENKINS_UID = 1000;
const JAR = 'usr/share/jenkins/agent-stand-in.jar';

/** /usr/local/bin/jenkins-agent, where upstream's inbound-agent image has its entrypoint script. */
export const AGENT_SCRIPT = `#!/bin/sh
# spillway/jenkins-agent (hack/images/jenkins-agent.ts): a stand-in for a Jenkins inbound agent, not Jenkins.
exec "$JAVA_HOME/bin/java" $JAVA_OPTS -cp /${JAR} dev.spillway.jenkins.AgentStandIn "$@"
`;

export async function jenkinsAgent(ctx: BuildContext): Promise<BuiltImage> {
  checkTag('jenkins-agent', STAND_IN_VERSION, 'STAND_IN_VERSION in hack/images/jenkins-agent.ts');
  const jar = compileJar(
    ctx,
    'jenkins-agent-stand-in',
    join(ctx.root, 'hack/images/jenkins-agent/AgentStandIn.java'),
  );
  const base = await busyboxLayer(ctx);
  const jre = await jreLayer(ctx);
  const entries: TarEntry[] = [
    fileEntry(JAR, jar),
    textEntry('usr/local/bin/jenkins-agent', AGENT_SCRIPT, 0o755),
    ...accountEntries(
      [...BASE_USERS, { name: 'jenkins', uid: JENKINS_UID, gid: JENKINS_UID, home: '/home/jenkins' }],
      [...BASE_GROUPS, { name: 'jenkins', gid: JENKINS_UID }],
    ),
    { path: 'home/jenkins', type: 'dir', mode: 0o755, uid: JENKINS_UID, gid: JENKINS_UID },
    { path: 'home/jenkins/agent', type: 'dir', mode: 0o755, uid: JENKINS_UID, gid: JENKINS_UID },
  ];
  const layer = await ctx.layers.layer(
    withParents(entries),
    `agent: hack/images/jenkins-agent/AgentStandIn.java ${STAND_IN_VERSION}`,
  );
  return {
    layers: [base.layer, jre.layer, layer],
    config: {
      User: `${JENKINS_UID}:${JENKINS_UID}`,
      Env: [
        `JAVA_HOME=${JAVA_HOME}`,
        pathWith(`${JAVA_HOME}/bin`),
        'JENKINS_AGENT_WORKDIR=/home/jenkins/agent',
      ],
      Entrypoint: ['/usr/local/bin/jenkins-agent'],
      WorkingDir: '/home/jenkins/agent',
    },
    inputs: `busybox-static ${base.version}, ${jre.sources}, AgentStandIn ${STAND_IN_VERSION}`,
  };
}
