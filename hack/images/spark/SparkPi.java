package dev.spillway.examples;

import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

/**
 * Estimates pi as Spark's own SparkPi example does: throw points at the unit square and count those that fall in
 * the circle. Spark publishes no examples jar to Maven Central, so spillway/spark carries this one at
 * /opt/spark/examples/jars/spark-examples.jar. Each of the `slices` tasks (first argument, default 2) throws
 * 100,000 points, so a task's work does not grow with the job and the driver holds only the slice numbers.
 */
public final class SparkPi {
  private static final int POINTS_PER_SLICE = 100_000;

  private SparkPi() {}

  public static void main(String[] args) {
    int slices = args.length > 0 ? Integer.parseInt(args[0]) : 2;
    SparkSession spark = SparkSession.builder().appName("Spark Pi").getOrCreate();
    try (JavaSparkContext sc = new JavaSparkContext(spark.sparkContext())) {
      List<Integer> ids = IntStream.range(0, slices).boxed().collect(Collectors.toList());
      long inside =
          sc.parallelize(ids, slices)
              .map(slice -> {
                ThreadLocalRandom random = ThreadLocalRandom.current();
                long count = 0;
                for (int i = 0; i < POINTS_PER_SLICE; i++) {
                  double x = random.nextDouble() * 2 - 1;
                  double y = random.nextDouble() * 2 - 1;
                  if (x * x + y * y <= 1) count++;
                }
                return count;
              })
              .reduce(Long::sum);
      System.out.println("Pi is roughly " + 4.0 * inside / ((long) slices * POINTS_PER_SLICE));
    } finally {
      spark.stop();
    }
  }
}
