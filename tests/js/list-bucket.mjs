// A pod's program with the AWS SDK for JavaScript v3: credentials come from
// the default chain (the container provider, through
// AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE),
// then it lists a bucket. Prints the keys as a JSON array, or the error name.
import { S3Client, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const bucket = process.argv[2];
const client = new S3Client({
  region: process.env.AWS_REGION || "us-east-1",
  endpoint: process.env.AWS_ENDPOINT_URL_S3,
  forcePathStyle: true,
  credentials: fromNodeProviderChain(),
});
try {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  console.log(JSON.stringify((out.Contents || []).map((o) => o.Key)));
} catch (e) {
  console.log(JSON.stringify({ error: e.name, message: e.message }));
  process.exit(1);
}
