package dev.spillway.jenkins;

import com.sun.net.httpserver.HttpServer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A stand-in for a Jenkins inbound agent and its controller, for spillway's demos and tests of agent pods: NOT
 * Jenkins. A real agent (remoting.jar) and controller are not published to Maven Central, so spillway/jenkins-agent
 * carries this instead; it connects the way an inbound agent finds its controller, and says so in every line.
 *
 * <p>agent (the default): reads the environment the Jenkins kubernetes plugin gives the agent container
 * (JENKINS_URL, JENKINS_AGENT_NAME, JENKINS_SECRET, JENKINS_TUNNEL), asks JENKINS_URL/tcpSlaveAgentListener/ for
 * the agent port (the X-Jenkins-JNLP-Port header), connects to it (or to JENKINS_TUNNEL, host:port), sends
 * {@code HELLO <name> <secret>}, answers each {@code RUN <text>} with {@code DONE <text>} and exits 0 on {@code BYE}.
 * It retries the connection until AGENT_CONNECT_TIMEOUT_SECONDS (default 300) pass, as an agent waits for its
 * controller.
 *
 * <p>controller: serves /tcpSlaveAgentListener/ on CONTROLLER_HTTP_PORT (8080) with the agent port
 * CONTROLLER_AGENT_PORT (50000), and gives each agent that says HELLO one {@code RUN build-<n>}, then {@code BYE}.
 */
public final class AgentStandIn {
  private AgentStandIn() {}

  public static void main(String[] args) throws Exception {
    String mode = args.length > 0 ? args[0] : "agent";
    switch (mode) {
      case "agent" -> System.exit(agent());
      case "controller" -> controller();
      default -> {
        System.err.println("jenkins-agent: unknown mode " + mode + "; use agent (the default) or controller");
        System.exit(64);
      }
    }
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  private static void say(String role, String line) {
    System.out.println(role + " (spillway stand-in, not Jenkins): " + line);
  }

  static int agent() throws InterruptedException {
    String url = env("JENKINS_URL", null);
    if (url == null) {
      System.err.println("jenkins-agent: JENKINS_URL is not set; the kubernetes plugin sets it to the controller's URL");
      return 64;
    }
    String name = env("JENKINS_AGENT_NAME", env("HOSTNAME", "agent"));
    String secret = env("JENKINS_SECRET", "-");
    Instant deadline =
        Instant.now().plusSeconds(Long.parseLong(env("AGENT_CONNECT_TIMEOUT_SECONDS", "300")));
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    for (int attempt = 1; ; attempt++) {
      try {
        String listener = url.replaceAll("/+$", "") + "/tcpSlaveAgentListener/";
        HttpResponse<String> res =
            http.send(
                HttpRequest.newBuilder(URI.create(listener)).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
        String port = res.headers().firstValue("X-Jenkins-JNLP-Port").orElse(null);
        say("agent", "GET " + listener + " answered HTTP " + res.statusCode() + ", agent port " + port);
        if (res.statusCode() != 200 || port == null)
          throw new IOException("no agent port at " + listener);
        String host = URI.create(url).getHost();
        String tunnel = env("JENKINS_TUNNEL", "");
        if (!tunnel.isEmpty()) {
          int colon = tunnel.lastIndexOf(':');
          if (colon > 0) host = tunnel.substring(0, colon);
          if (colon < tunnel.length() - 1) port = tunnel.substring(colon + 1);
        }
        return session(name, secret, host, Integer.parseInt(port));
      } catch (IOException | IllegalArgumentException e) {
        say("agent", "attempt " + attempt + " to reach " + url + " failed: " + e);
        if (Instant.now().isAfter(deadline)) {
          say("agent", "giving up");
          return 1;
        }
        Thread.sleep(Math.min(10_000, 500L * attempt));
      }
    }
  }

  private static int session(String name, String secret, String host, int port) throws IOException {
    try (Socket socket = new Socket(host, port);
        BufferedReader in =
            new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        PrintWriter out = new PrintWriter(socket.getOutputStream(), true, StandardCharsets.UTF_8)) {
      say("agent", "connected to " + host + ":" + port + " as " + name);
      out.println("HELLO " + name + " " + secret);
      for (String line; (line = in.readLine()) != null; ) {
        say("agent", "got: " + line);
        if (line.startsWith("RUN ")) out.println("DONE " + line.substring(4));
        if (line.equals("BYE")) return 0;
      }
      say("agent", "the controller closed the connection before BYE");
      return 1;
    }
  }

  static void controller() throws IOException {
    int httpPort = Integer.parseInt(env("CONTROLLER_HTTP_PORT", "8080"));
    int agentPort = Integer.parseInt(env("CONTROLLER_AGENT_PORT", "50000"));
    String bind = env("CONTROLLER_BIND_ADDRESS", "0.0.0.0");
    HttpServer http = HttpServer.create(new InetSocketAddress(bind, httpPort), 0);
    http.createContext(
        "/tcpSlaveAgentListener/",
        exchange -> {
          byte[] body = "Jenkins agent listener (spillway stand-in)\n".getBytes(StandardCharsets.UTF_8);
          exchange.getResponseHeaders().add("X-Jenkins-JNLP-Port", String.valueOf(agentPort));
          exchange.sendResponseHeaders(200, body.length);
          exchange.getResponseBody().write(body);
          exchange.close();
        });
    http.start();
    AtomicInteger builds = new AtomicInteger();
    try (ServerSocket agents = new ServerSocket()) {
      agents.bind(new InetSocketAddress(bind, agentPort));
      say("controller", "HTTP on " + bind + ":" + httpPort + ", agents on " + bind + ":" + agentPort);
      while (true) {
        Socket socket = agents.accept();
        int build = builds.incrementAndGet();
        new Thread(() -> serve(socket, build)).start();
      }
    }
  }

  private static void serve(Socket socket, int build) {
    try (socket;
        BufferedReader in =
            new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        PrintWriter out = new PrintWriter(socket.getOutputStream(), true, StandardCharsets.UTF_8)) {
      String hello = in.readLine();
      if (hello == null || !hello.startsWith("HELLO ")) return;
      String agent = hello.split(" ")[1];
      say("controller", "agent " + agent + " connected from " + socket.getRemoteSocketAddress());
      out.println("RUN build-" + build);
      say("controller", "agent " + agent + " answered " + in.readLine());
      out.println("BYE");
    } catch (IOException e) {
      say("controller", "agent connection failed: " + e);
    }
  }
}
