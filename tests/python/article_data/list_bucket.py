import boto3
s3 = boto3.resource('s3')
bucket = s3.Bucket('sample')
print([obj.key for obj in bucket.objects.all()])
