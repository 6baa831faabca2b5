//! A pod's program with aws-sdk-rust: credentials from aws-config's default
//! chain (here the container provider, through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`), then it lists a bucket. Prints the
//! keys as a JSON array, or the error and exits 1.
#![forbid(unsafe_code)]

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(bucket) = std::env::args().nth(1) else {
        eprintln!("usage: list-bucket BUCKET");
        return ExitCode::from(2);
    };
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // moto serves buckets by path; the endpoint comes from AWS_ENDPOINT_URL_S3.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    match s3.list_objects_v2().bucket(&bucket).send().await {
        Ok(out) => {
            let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
            println!("{}", serde_json::to_string(&keys).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            println!("{}", serde_json::json!({"error": detail}));
            ExitCode::FAILURE
        }
    }
}
